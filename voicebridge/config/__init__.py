"""Loading and validating voicebridge's YAML configuration: pipelines and service settings."""

from voicebridge.config.errors import ConfigError, ConfigIssue
from voicebridge.config.pipeline_config import (
    PipelineSpec,
    StageSpec,
    StageStartError,
    load_pipeline,
    load_pipeline_text,
)
from voicebridge.config.service_settings import ServiceSettings, load_service_settings

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "PipelineSpec",
    "ServiceSettings",
    "StageSpec",
    "StageStartError",
    "load_pipeline",
    "load_pipeline_text",
    "load_service_settings",
]
