"""Smart Turn v3.2, the learned end-of-turn model, fetched into voxgate's cache.

The ONNX file (BSD-2-Clause, Daily) ships inside the PyPI wheel of
``pipecat-ai``. pipecat itself is not a dependency of voxgate: set-up
(``voxgate models assemble``) downloads that one wheel with pip, without its
dependencies, extracts the single model file, checks it against the SHA-256
recorded here and writes it atomically to
``<cache>/models/smart-turn-v3.2-cpu.onnx``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from voxgate.models.assets import CorruptModelError, MissingModelError, cache_dir, sha256_file

SMART_TURN_FILENAME = "smart-turn-v3.2-cpu.onnx"
SMART_TURN_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
SMART_TURN_SIZE = 8_679_182
SMART_TURN_LICENCE = "BSD-2-Clause (Daily, pipecat-ai)"
# The hash above belongs to the file in this exact release.
PIPECAT_WHEEL = "pipecat-ai==1.14.0"
WHEEL_MEMBER = f"pipecat/audio/turn/smart_turn/data/{SMART_TURN_FILENAME}"

FETCH_FIX = "run `voxgate models assemble`, which downloads the pipecat-ai wheel from PyPI"
_PIP_TIMEOUT_S = 600


def smart_turn_cached_path() -> Path:
    return cache_dir() / "models" / SMART_TURN_FILENAME


def verify_smart_turn(path: Path | None = None) -> Path:
    """Hash the cached model (about 20 ms); raise with the fix if missing or corrupted."""
    path = path or smart_turn_cached_path()
    if not path.is_file():
        raise MissingModelError(
            f"the Smart Turn v3.2 model is not in the cache at {path} (fix: {FETCH_FIX})"
        )
    size = path.stat().st_size
    actual = sha256_file(path) if size == SMART_TURN_SIZE else f"(size {size})"
    if actual != SMART_TURN_SHA256:
        raise CorruptModelError(
            f"the cached Smart Turn model {path} is corrupted: SHA-256 {actual}, expected "
            f"{SMART_TURN_SHA256} (fix: {FETCH_FIX})"
        )
    return path


def extract_from_wheel(wheel: Path, dest: Path) -> Path:
    """Copy the model out of ``wheel`` to ``dest``, verified, via a temporary file and a rename."""
    try:
        archive = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as exc:
        raise CorruptModelError(
            f"{wheel} is not a readable wheel: {exc} (fix: {FETCH_FIX})"
        ) from exc
    with archive:
        try:
            info = archive.getinfo(WHEEL_MEMBER)
        except KeyError as exc:
            raise CorruptModelError(
                f"{wheel} has no {WHEEL_MEMBER}: it is not the {PIPECAT_WHEEL} wheel "
                f"(fix: {FETCH_FIX})"
            ) from exc
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, archive.open(info) as src:
                while block := src.read(1 << 20):
                    digest.update(block)
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
                os.fchmod(out.fileno(), 0o644)  # mkstemp makes it owner-only; it is public
            check_sha256(digest.hexdigest(), f"{WHEEL_MEMBER} in {wheel.name}")
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return dest


def check_sha256(actual: str, what: str) -> None:
    if actual != SMART_TURN_SHA256:
        raise CorruptModelError(
            f"{what} hashes to {actual}, expected {SMART_TURN_SHA256}: refusing it "
            f"(fix: make sure pip fetches {PIPECAT_WHEEL} from PyPI and {FETCH_FIX})"
        )


def _download_wheel(directory: Path) -> Path:
    command = [
        sys.executable, "-m", "pip", "download", PIPECAT_WHEEL,
        "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-d", str(directory),
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MissingModelError(
            f"could not run pip to download {PIPECAT_WHEEL}: {exc} "
            f"(fix: make pip usable in this environment, e.g. {sys.executable} -m ensurepip, "
            f"then {FETCH_FIX})"
        ) from exc
    wheels = sorted(directory.glob("pipecat_ai-*.whl"))
    if result.returncode != 0 or not wheels:
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise MissingModelError(
            f"pip could not download {PIPECAT_WHEEL} (exit {result.returncode}: {tail}) "
            f"(fix: allow access to PyPI and {FETCH_FIX}, or put {SMART_TURN_FILENAME} "
            f"with SHA-256 {SMART_TURN_SHA256} at {smart_turn_cached_path()})"
        )
    return wheels[0]


def fetch_smart_turn() -> Path:
    """The cached Smart Turn model, downloaded and extracted from the pipecat wheel if needed."""
    dest = smart_turn_cached_path()
    try:
        return verify_smart_turn(dest)
    except CorruptModelError as exc:
        print(f"voxgate: {exc}; fetching it again", file=sys.stderr)
    except MissingModelError:
        pass
    with tempfile.TemporaryDirectory(prefix="voxgate-pipecat-") as tmp:
        return extract_from_wheel(_download_wheel(Path(tmp)), dest)
