"""voicebridge: a Plivo phone call as a live conversation with a virtual agent.

The names a pipeline author needs are importable from here (``from voicebridge import Stage,
StageParams``); they load on first use, so ``import voicebridge`` stays cheap for the CLI.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("voicebridge")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"

_PUBLIC = {
    "Stage": "voicebridge.runtime.stage",
    "StageParams": "voicebridge.runtime.stage",
    "CallContext": "voicebridge.call.context",
    "CallEvent": "voicebridge.call.events",
    "Session": "voicebridge.session",
    "load_pipeline": "voicebridge.config",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'voicebridge' has no attribute {name!r}")
    return getattr(import_module(module), name)
