"""Settings of the agent service process: where it listens, how it streams, its limits and logs.

Precedence, lowest to highest: built-in defaults < ``configs/service.yaml`` (or the file given) <
``VOICEBRIDGE_*`` environment variables < explicit overrides (CLI flags). Secrets (Plivo auth token,
provider API keys) are read from the environment by the code that needs them and are refused here,
so a config file can be committed and shared safely.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from voicebridge.config.errors import ConfigError, ConfigIssue, KeyPath, format_path
from voicebridge.config.yaml_source import (
    DEFAULT_MAX_BYTES,
    YamlDocument,
    load_yaml_file,
    validation_issues,
)

DEFAULT_CONFIG_PATH = Path("configs") / "service.yaml"

# environment variable -> setting path
ENV_VARS: dict[str, tuple[str, ...]] = {
    "VOICEBRIDGE_HOST": ("host",),
    "VOICEBRIDGE_PORT": ("port",),
    "VOICEBRIDGE_PUBLIC_URL": ("public_url",),
    "VOICEBRIDGE_PIPELINE": ("pipeline",),
    "VOICEBRIDGE_CODEC": ("stream", "codec"),
    "VOICEBRIDGE_SAMPLE_RATE": ("stream", "sample_rate"),
    "VOICEBRIDGE_MAX_CALLS": ("limits", "max_calls"),
    "VOICEBRIDGE_LOG_FORMAT": ("log", "format"),
    "VOICEBRIDGE_LOG_LEVEL": ("log", "level"),
    "VOICEBRIDGE_DRAIN_DEADLINE_S": ("drain", "deadline_s"),
    "VOICEBRIDGE_EVENTS_DIR": ("events", "dir"),
    "VOICEBRIDGE_RECORDING_DIR": ("recording", "dir"),
    "VOICEBRIDGE_VERIFY_SIGNATURES": ("security", "verify_signatures"),
    "VOICEBRIDGE_STREAM_TOKEN_MODE": ("security", "stream_token"),
    "VOICEBRIDGE_STREAM_TOKEN_TTL_S": ("security", "stream_token_ttl_s"),
    "VOICEBRIDGE_LEG_QUIET_S": ("security", "leg_quiet_s"),
    "VOICEBRIDGE_REPLAY_WINDOW_S": ("security", "replay_window_s"),
    "VOICEBRIDGE_STATE": ("state",),
    "VOICEBRIDGE_WORKERS": ("workers",),
    "VOICEBRIDGE_RESUME_GRACE_S": ("resume", "grace_s"),
    "VOICEBRIDGE_HTTP_HEADER_TIMEOUT_S": ("http", "header_timeout_s"),
    "VOICEBRIDGE_HTTP_BODY_TIMEOUT_S": ("http", "body_timeout_s"),
    "VOICEBRIDGE_WEBHOOK_URL": ("webhook", "url"),
    "VOICEBRIDGE_WEBHOOK_SPOOL_DIR": ("webhook", "spool_dir"),
}

_SECRET_KEY = re.compile(r"auth_?token|password|passwd|secret|api_?key|private_?key", re.I)
_HEADER_TEXT = re.compile(r"[A-Za-z0-9_\-.]+\Z")
_SECRET_MESSAGE = (
    "secrets must not be stored in YAML; set them in the environment instead"
    " (for example PLIVO_AUTH_TOKEN)"
)
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StreamSettings(_Section):
    """The Plivo ``<Stream>`` the answer XML asks for."""

    codec: Literal["l16", "mulaw"] = "l16"
    sample_rate: Literal[8000, 16000] = 16000
    keep_call_alive: bool = True
    stream_timeout_s: int = Field(default=86400, ge=1)
    status_callback: bool = True
    extra_headers: dict[str, str] = Field(default_factory=dict)
    noise_cancellation: bool = False

    @field_validator("sample_rate", mode="before")
    @classmethod
    def _rate_from_text(cls, value: Any) -> Any:
        # Literal[int] does not coerce strings, and env vars and ${VAR} values are strings.
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        return value

    @field_validator("extra_headers")
    @classmethod
    def _plain_headers(cls, value: dict[str, str]) -> dict[str, str]:
        # Plivo sends them as "k1=v1,k2=v2": separators inside a key or value would corrupt it.
        for key, text in value.items():
            if not _HEADER_TEXT.match(key) or not _HEADER_TEXT.match(text):
                raise ValueError(
                    f"header {key}={text}: keys and values may use only letters, digits, "
                    "'_', '-' and '.'"
                )
        return value

    @model_validator(mode="after")
    def _mulaw_is_8k(self) -> StreamSettings:
        if self.codec == "mulaw" and self.sample_rate != 8000:
            raise ValueError("codec 'mulaw' is only streamed at sample_rate 8000")
        return self


class LimitSettings(_Section):
    """Caps that keep one bad caller or file from taking the service down."""

    max_calls: int = Field(default=200, ge=1)
    max_message_bytes: int = Field(default=256 * 1024, ge=1024)
    max_call_seconds: float = Field(default=3600, gt=0)
    max_yaml_bytes: int = Field(default=1 << 20, ge=1024)
    # Admission: a socket is not a call until its ``start``; until then it is "pending".
    start_timeout_s: float = Field(default=5.0, gt=0, le=60)
    max_pending_streams: int = Field(default=64, ge=1)
    max_pending_per_peer: int = Field(default=16, ge=1)
    # Fair share: caller audio may run this far ahead of real time (jitter, a stalled network
    # catching up); beyond it frames are dropped, and past ``media_flood_s`` dropped the socket
    # is closed.
    media_burst_s: float = Field(default=2.0, gt=0, le=600)
    media_flood_s: float = Field(default=5.0, gt=0, le=3600)


class DrainSettings(_Section):
    """Graceful shutdown: SIGTERM stops new calls and lets live ones finish, up to a deadline."""

    deadline_s: float = Field(default=30.0, ge=0)
    goodbye: str = "Sorry, I have to end this call now. Please call again. Goodbye."
    goodbye_timeout_s: float = Field(default=10.0, ge=0)


class RecordSettings(_Section):
    """Optional per-call files; ``dir: null`` (the default) writes nothing."""

    dir: str | None = None

    @field_validator("dir")
    @classmethod
    def _blank_is_off(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None


class ResumeSettings(_Section):
    """Resuming a call whose WebSocket dropped (Plivo retries a failed stream twice)."""

    grace_s: float = Field(default=10.0, ge=0, le=600)  # 0: a dropped socket ends the call
    store_timeout_s: float = Field(default=0.5, gt=0, le=10)
    store_backoff_s: float = Field(default=1.0, ge=0, le=60)


class HttpSettings(_Section):
    """The HTTP edge: how long a client may take to send a request, and how many may be in
    progress at once. Plivo sends a small request in one go; only a slow-loris client dribbles."""

    header_timeout_s: float = Field(default=5.0, gt=0, le=300)
    body_timeout_s: float = Field(default=10.0, gt=0, le=300)
    max_incomplete: int = Field(default=256, ge=1)
    max_incomplete_per_peer: int = Field(default=32, ge=1)
    max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)


class WebhookSettings(_Section):
    """The post-call webhook: one signed JSON document per call, POSTed after it ends and kept
    on disk until the receiver takes it. Its secret comes from the environment only
    (``VOICEBRIDGE_WEBHOOK_SECRET``); ``url: null`` (the default) sends nothing."""

    url: str | None = None
    spool_dir: str = "webhook-spool"
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    max_attempts: int = Field(default=10, ge=1, le=100)
    backoff_initial_s: float = Field(default=2.0, gt=0, le=3600)
    backoff_max_s: float = Field(default=600.0, gt=0, le=86400)
    concurrency: int = Field(default=4, ge=1, le=64)
    max_document_bytes: int = Field(default=256 * 1024, ge=4096, le=16 * 1024 * 1024)
    max_spool_files: int = Field(default=10_000, ge=1, le=1_000_000)
    max_spool_bytes: int = Field(default=512 * 1024 * 1024, ge=1 << 20)
    max_dead_letters: int = Field(default=1000, ge=0, le=1_000_000)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL such as https://crm.example.com/hook")
        return value.strip()

    @field_validator("spool_dir")
    @classmethod
    def _spool_named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name a folder (undelivered documents are kept there)")
        return value.strip()


class CallPageSettings(_Section):
    """The operator's call pages (``GET /calls``): served only when ``VOICEBRIDGE_API_KEY`` is set,
    to a browser that gives it as the HTTP Basic password. Everything they keep is bounded."""

    enabled: bool = True
    keep_calls: int = Field(default=50, ge=1, le=10_000)  # the ring of recent calls in memory
    max_events: int = Field(default=2000, ge=100, le=100_000)  # per call kept in memory
    poll_s: float = Field(default=1.0, ge=0.2, le=60)  # how often a live call's page asks
    audio_budget_mb: float = Field(default=16.0, ge=0, le=256)  # WAV embedded in one page
    max_file_mb: float = Field(default=32.0, gt=0, le=4096)  # larger files are not read


class LogSettings(_Section):
    format: Literal["auto", "console", "json"] = "auto"
    level: str = "info"

    @field_validator("level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().lower()
        if level not in _LOG_LEVELS:
            raise ValueError(f"log level must be one of {', '.join(_LOG_LEVELS)}")
        return level


class TracingSettings(_Section):
    """OpenTelemetry traces of each call (docs/tracing.md; needs the ``otel`` extra). The
    standard ``OTEL_*`` environment variables win over these values where both are set."""

    # Also on when OTEL_TRACES_EXPORTER names an exporter (not "none"); OTEL_SDK_DISABLED=true
    # turns it off whatever this says.
    enabled: bool = False
    service_name: str = "voicebridge"  # OTEL_SERVICE_NAME wins
    exporter: Literal["otlp", "console", "none"] = "otlp"  # OTEL_TRACES_EXPORTER wins
    # OTLP/HTTP traces URL; null: OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT or the collector on
    # localhost (http://localhost:4318/v1/traces).
    endpoint: str | None = None
    # Caller and agent words (bounded) on the spans; false keeps them out of the traces.
    include_text: bool = True

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL such as http://collector:4318/v1/traces")
        return value.strip()

    def active(self, environ: Mapping[str, str]) -> bool:
        """Whether calls are traced, given the process environment."""
        if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return False
        exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
        return self.enabled or exporters not in ("", "none")


Switch = Literal["auto", "on", "off"]


class SecuritySettings(_Section):
    """Which protections run. Their secrets come from the environment only (``PLIVO_AUTH_TOKEN``,
    ``VOICEBRIDGE_STREAM_SECRET``); ``auto`` means on when the secret is set."""

    verify_signatures: Switch = "auto"
    stream_token: Switch = "auto"
    stream_token_ttl_s: float = Field(default=60.0, gt=0, le=3600)
    # A live leg silent this long is dead (Plivo sends media every 20 ms): the call's retry,
    # with the call's own stream token, takes over at once.
    leg_quiet_s: float = Field(default=2.0, gt=0, le=60)
    # Signature nonces are remembered this long: a replayed signed request is refused.
    replay_window_s: float = Field(default=3600.0, gt=0, le=86400)

    @field_validator("verify_signatures", "stream_token", mode="before")
    @classmethod
    def _switch(cls, value: Any) -> Any:
        # YAML 1.1 readers and env vars spell the switch as a boolean or in any case.
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, str):
            text = value.strip().lower()
            return {"true": "on", "false": "off", "yes": "on", "no": "off"}.get(text, text)
        return value


class ServiceSettings(_Section):
    """Everything the agent service needs besides the pipeline and the secrets."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    public_url: str | None = None
    pipeline: str = "pipelines/offline.yaml"
    stream: StreamSettings = Field(default_factory=lambda: StreamSettings())
    limits: LimitSettings = Field(default_factory=lambda: LimitSettings())
    log: LogSettings = Field(default_factory=lambda: LogSettings())
    drain: DrainSettings = Field(default_factory=lambda: DrainSettings())
    events: RecordSettings = Field(default_factory=lambda: RecordSettings())
    recording: RecordSettings = Field(default_factory=lambda: RecordSettings())
    security: SecuritySettings = Field(default_factory=lambda: SecuritySettings())
    # Where resumable call state lives: "memory" (one process) or redis://host:port/db.
    state: str = "memory"
    workers: int = Field(default=1, ge=1, le=256)
    resume: ResumeSettings = Field(default_factory=lambda: ResumeSettings())
    http: HttpSettings = Field(default_factory=lambda: HttpSettings())
    webhook: WebhookSettings = Field(default_factory=lambda: WebhookSettings())
    call_pages: CallPageSettings = Field(default_factory=lambda: CallPageSettings())
    tracing: TracingSettings = Field(default_factory=lambda: TracingSettings())

    _config_path: Path | None = PrivateAttr(default=None)

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL such as https://agent.example.com")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or fragment")
        return value.strip().rstrip("/")

    @field_validator("state")
    @classmethod
    def _check_state(cls, value: str) -> str:
        value = value.strip()
        if value == "memory":
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss", "unix") or not (parts.netloc or parts.path):
            raise ValueError("must be 'memory' or a Redis URL such as redis://localhost:6379/0")
        return value

    @model_validator(mode="after")
    def _shared_state_for_workers(self) -> ServiceSettings:
        if self.workers > 1 and self.state == "memory" and self.resume.grace_s > 0:
            raise ValueError(
                f"workers: {self.workers} processes cannot share 'state: memory': a dropped "
                "call may reconnect to another worker. Set state: redis://host:port/db, or "
                "resume.grace_s: 0 to end calls whose socket drops"
            )
        return self

    @property
    def config_path(self) -> Path | None:
        """The YAML file these settings were loaded from, if any."""
        return self._config_path

    def stream_url(self) -> str | None:
        """The ``wss://…/stream`` URL for the answer XML, or None to derive it from the request."""
        if self.public_url is None:
            return None
        parts = urlsplit(self.public_url)
        scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
        return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}/stream"

    def resolve_pipeline_path(self, cwd: str | Path | None = None) -> Path:
        """The pipeline file to load: as given if absolute, else relative to the working
        directory, else relative to the project root (the folder holding ``configs/``)."""
        path = Path(self.pipeline).expanduser()
        if path.is_absolute():
            return path
        base = Path.cwd() if cwd is None else Path(cwd)
        candidates = [base / path]
        if self._config_path is not None:
            candidates.append(self._config_path.resolve().parent.parent / path)
        candidates.append(Path(__file__).resolve().parents[2] / path)
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        return candidates[0]


def _secret_paths(data: Any, path: KeyPath = ()) -> list[KeyPath]:
    """Paths of keys that look like secrets, anywhere in the document."""
    found: list[KeyPath] = []
    if isinstance(data, dict):
        for key, value in data.items():
            child = (*path, key)
            if isinstance(key, str) and _SECRET_KEY.search(key):
                found.append(child)
            else:
                found += _secret_paths(value, child)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _secret_paths(value, (*path, index))
    return found


def _pop_path(data: Any, path: KeyPath) -> None:
    for part in path[:-1]:
        data = data[part]
    del data[path[-1]]


def _set_path(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    target = data
    for part in path[:-1]:
        child = target.get(part)
        if not isinstance(child, dict):
            child = {}
            target[part] = child
        target = child
    target[path[-1]] = value


def _flatten(
    overrides: Mapping[str, Any], prefix: tuple[str, ...] = ()
) -> dict[tuple[str, ...], Any]:
    """Nested or dotted (``"log.level"``) overrides as paths to values; None values dropped."""
    flat: dict[tuple[str, ...], Any] = {}
    for key, value in overrides.items():
        path = (*prefix, *str(key).split("."))
        if isinstance(value, Mapping):
            flat.update(_flatten(value, path))
        elif value is not None:
            flat[path] = value
    return flat


def load_service_settings(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ServiceSettings:
    """Defaults < YAML file < ``VOICEBRIDGE_*`` environment < ``overrides`` (None values ignored).

    Without ``path``, ``configs/service.yaml`` in the working directory is used if it exists.
    Empty environment variables count as unset. Raises ConfigError listing every problem.
    """
    env = os.environ if environ is None else environ
    if path is None and DEFAULT_CONFIG_PATH.is_file():
        path = DEFAULT_CONFIG_PATH
    data: dict[str, Any] = {}
    issues: list[ConfigIssue] = []
    doc: YamlDocument | None = None
    if path is not None:
        doc = load_yaml_file(path, environ=env, max_bytes=max_bytes)
        issues += doc.issues
        if isinstance(doc.data, dict):
            data = doc.data
            for secret in _secret_paths(data):
                issues.append(doc.issue(secret, _SECRET_MESSAGE))
                _pop_path(data, secret)  # reported here; not again as an unknown setting
        elif doc.data is not None:
            issues.append(doc.issue((), "a service config file must be a mapping of settings"))

    # Values that did not come from the file are reported against their source instead.
    origins: dict[tuple[str, ...], str] = {}
    for var, setting in ENV_VARS.items():
        value = env.get(var)
        if value:
            _set_path(data, setting, value)
            origins[setting] = f"environment variable {var}"
    for setting, value in _flatten(overrides or {}).items():
        _set_path(data, setting, value)
        origins[setting] = "override"

    try:
        settings = ServiceSettings.model_validate(data)
    except ValidationError as exc:
        source = str(path) if path is not None else "<service settings>"
        file_doc = doc or YamlDocument(source=source, data=data)
        reported = [issue.path for issue in issues if issue.path]
        for issue in validation_issues(file_doc, exc, (), ServiceSettings, what="setting"):
            if any(_under(issue.path, prefix) for prefix in reported):
                continue  # an unset ${VAR} already explains this value
            origin = next(
                (o for p, o in origins.items() if _under(issue.path, format_path(p))), None
            )
            if origin is not None:
                issue = ConfigIssue(origin, None, None, issue.path, issue.message)
            else:  # a check across several values: name those that did not come from the file
                inside = [
                    f"{format_path(p)} from {o}"
                    for p, o in origins.items()
                    if issue.path and _under(format_path(p), issue.path)
                ]
                if inside:
                    issue.message += f" ({'; '.join(inside)})"
            issues.append(issue)
        raise ConfigError(issues) from None
    if issues:
        raise ConfigError(issues)
    if path is not None:
        settings._config_path = Path(path)
    return settings


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((prefix + ".", prefix + "["))
