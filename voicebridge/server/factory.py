"""The app factory worker processes import (``voicebridge serve --workers N``).

uvicorn starts each worker as a fresh process that imports the app by name, so the settings and
the pipeline file chosen by the ``serve`` command are handed down through the environment. Each
worker loads the pipeline (and its models) itself: memory grows with the number of workers.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette

from voicebridge.config import ServiceSettings, load_pipeline
from voicebridge.observe.logs import configure_logging
from voicebridge.server.app import create_app

SETTINGS_ENV = "VOICEBRIDGE_SETTINGS_JSON"
PIPELINE_ENV = "VOICEBRIDGE_PIPELINE_PATH"


def app_from_env() -> Starlette:
    """Build the service from the settings ``serve`` put in the environment."""
    raw = os.environ.get(SETTINGS_ENV)
    if not raw:
        raise RuntimeError(f"{SETTINGS_ENV} is not set: start workers with `voicebridge serve`")
    settings = ServiceSettings.model_validate_json(raw)
    configure_logging(settings.log.format, settings.log.level)
    path = os.environ.get(PIPELINE_ENV) or settings.resolve_pipeline_path()
    spec = load_pipeline(path, max_bytes=settings.limits.max_yaml_bytes)
    return create_app(settings, spec, drain_on_sigterm=True, freeze_gc=True)
