"""Fetching Smart Turn v3.2 out of the pipecat wheel (voxgate.models.smart_turn_asset).

No network: the wheels here are small zip files made by the tests.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import zipfile
from pathlib import Path

import pytest

from voxgate.models import assets
from voxgate.models import smart_turn_asset as st
from voxgate.models.assets import CorruptModelError, MissingModelError


def _wheel(directory: Path, payload: bytes, member: str = st.WHEEL_MEMBER) -> Path:
    path = directory / "pipecat_ai-1.14.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("pipecat/__init__.py", "")
        wheel.writestr(member, payload)
    return path


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VOXGATE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "models"


def test_a_wrong_file_in_the_wheel_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path, b"not the smart turn model")
    dest = tmp_path / "models" / st.SMART_TURN_FILENAME

    with pytest.raises(CorruptModelError) as excinfo:
        st.extract_from_wheel(wheel, dest)

    message = str(excinfo.value)
    assert hashlib.sha256(b"not the smart turn model").hexdigest() in message
    assert st.SMART_TURN_SHA256 in message
    assert "voxgate models assemble" in message  # the fix
    assert not dest.exists()
    assert _leftovers(dest.parent) == []


def test_the_right_file_is_written_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = b"\x08\x07onnx" * 300_000  # 1.8 MB: more than one read block
    monkeypatch.setattr(st, "SMART_TURN_SHA256", hashlib.sha256(payload).hexdigest())
    dest = tmp_path / "models" / st.SMART_TURN_FILENAME

    assert st.extract_from_wheel(_wheel(tmp_path, payload), dest) == dest

    assert dest.read_bytes() == payload
    assert dest.stat().st_mode & 0o777 == 0o644
    assert _leftovers(dest.parent) == []


def test_a_wheel_without_the_model_names_the_fix(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path, b"x", member="pipecat/other.onnx")
    with pytest.raises(CorruptModelError, match=r"has no pipecat/audio/turn/smart_turn/data"):
        st.extract_from_wheel(wheel, tmp_path / "out.onnx")


def test_a_corrupted_cache_file_is_caught_by_verify(cache: Path) -> None:
    cache.mkdir(parents=True)
    path = cache / st.SMART_TURN_FILENAME
    path.write_bytes(b"\0" * st.SMART_TURN_SIZE)  # right size, wrong bytes

    with pytest.raises(CorruptModelError, match="is corrupted") as excinfo:
        st.verify_smart_turn()
    assert "voxgate models assemble" in str(excinfo.value)


def test_a_missing_model_names_the_fix(cache: Path) -> None:
    with pytest.raises(MissingModelError, match="voxgate models assemble"):
        st.verify_smart_turn()


def test_fetch_refuses_a_wrong_download_and_keeps_the_cache_clean(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_download(directory: Path) -> Path:
        return _wheel(directory, b"tampered")

    monkeypatch.setattr(st, "_download_wheel", fake_download)

    with pytest.raises(CorruptModelError, match="refusing it"):
        st.fetch_smart_turn()
    assert not (cache / st.SMART_TURN_FILENAME).exists()
    assert _leftovers(cache) == []


def test_fetch_reports_a_failed_pip_with_the_fix(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No config, no index, an empty folder of wheels: pip fails at once, without the network.
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))

    with pytest.raises(MissingModelError) as excinfo:
        st.fetch_smart_turn()
    message = str(excinfo.value)
    assert "pip could not download pipecat-ai==1.14.0" in message
    assert "allow access to PyPI" in message


def test_check_lists_smart_turn_as_optional(cache: Path) -> None:
    asset = assets.inventory()[-1]
    assert asset.name.startswith("Smart Turn v3.2")
    assert not asset.required
    assert "BSD-2-Clause" in asset.licence
    with pytest.raises(MissingModelError):
        asset.locate()


def test_assemble_goes_on_when_smart_turn_cannot_be_fetched(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def offline() -> Path:
        raise MissingModelError("pip could not download pipecat-ai==1.14.0 (fix: ...)")

    monkeypatch.setattr(st, "fetch_smart_turn", offline)
    monkeypatch.setattr(assets, "LLM_MODELS", {})
    monkeypatch.setattr(assets, "inventory", lambda verify=False: [])

    assert assets.cli_models(argparse.Namespace(action="assemble")) == 0
    assert "optional Smart Turn model not fetched" in capsys.readouterr().err
