"""Service settings: defaults < YAML < environment < overrides, validation lines, no secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicebridge.config import ConfigError, ServiceSettings, load_service_settings
from voicebridge.config.service_settings import ENV_VARS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run each test in an empty directory so no real configs/service.yaml is picked up."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults() -> None:
    settings = load_service_settings(environ={})
    assert settings == ServiceSettings()
    assert (settings.host, settings.port, settings.public_url) == ("127.0.0.1", 8080, None)
    assert settings.pipeline == "pipelines/offline.yaml"
    assert settings.stream.codec == "l16"
    assert settings.stream.sample_rate == 16000
    assert settings.stream.keep_call_alive is True
    assert settings.stream.stream_timeout_s == 86400
    assert settings.stream.status_callback is True
    assert settings.stream.extra_headers == {}
    assert settings.stream.noise_cancellation is False
    assert settings.limits.max_calls == 200
    assert settings.limits.max_message_bytes == 256 * 1024
    assert settings.limits.max_call_seconds == 3600
    assert settings.limits.max_yaml_bytes == 1 << 20
    assert (settings.log.format, settings.log.level) == ("auto", "info")
    assert settings.config_path is None


def test_shipped_service_yaml_matches_the_defaults() -> None:
    settings = load_service_settings(ROOT / "configs" / "service.yaml", environ={})
    assert settings.model_dump() == ServiceSettings().model_dump()


def test_shipped_service_yaml_documents_every_setting() -> None:
    text = (ROOT / "configs" / "service.yaml").read_text()
    lines = text.splitlines()
    sections = {
        "": ServiceSettings.model_fields,
        "stream": ServiceSettings.model_fields["stream"].annotation.model_fields,  # type: ignore[union-attr]
        "limits": ServiceSettings.model_fields["limits"].annotation.model_fields,  # type: ignore[union-attr]
        "log": ServiceSettings.model_fields["log"].annotation.model_fields,  # type: ignore[union-attr]
        "drain": ServiceSettings.model_fields["drain"].annotation.model_fields,  # type: ignore[union-attr]
        "events": ServiceSettings.model_fields["events"].annotation.model_fields,  # type: ignore[union-attr]
        "recording": ServiceSettings.model_fields["recording"].annotation.model_fields,  # type: ignore[union-attr]
        "security": ServiceSettings.model_fields["security"].annotation.model_fields,  # type: ignore[union-attr]
        "resume": ServiceSettings.model_fields["resume"].annotation.model_fields,  # type: ignore[union-attr]
        "call_pages": ServiceSettings.model_fields["call_pages"].annotation.model_fields,  # type: ignore[union-attr]
    }
    for section, fields in sections.items():
        indent = "  " if section else ""
        for name in fields:
            if name in (
                "stream",
                "limits",
                "log",
                "drain",
                "events",
                "recording",
                "security",
                "resume",
            ):
                continue
            index = next(i for i, line in enumerate(lines) if line.startswith(f"{indent}{name}:"))
            assert lines[index - 1].strip().startswith("#"), f"no comment above {name}"


def test_default_file_in_cwd_is_used(empty_cwd: Path) -> None:
    write(empty_cwd / "configs" / "service.yaml", "port: 9000\n")
    settings = load_service_settings(environ={})
    assert settings.port == 9000
    assert settings.config_path == Path("configs/service.yaml")


def test_precedence_defaults_yaml_env_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path / "service.yaml",
        "host: 0.0.0.0\nport: 9000\npipeline: from_yaml.yaml\nlog: {level: warning}\n"
        "stream: {codec: mulaw, sample_rate: 8000}\n",
    )
    environ = {"VOICEBRIDGE_PORT": "9100", "VOICEBRIDGE_PIPELINE": "from_env.yaml"}
    overrides = {"pipeline": "from_cli.yaml", "host": None, "log": {"level": None}}
    settings = load_service_settings(path, environ=environ, overrides=overrides)
    assert settings.host == "0.0.0.0"  # yaml (override is None)
    assert settings.port == 9100  # env beats yaml
    assert settings.pipeline == "from_cli.yaml"  # override beats env
    assert settings.log.level == "warning"  # yaml; a None override is ignored
    assert settings.stream.codec == "mulaw"  # yaml
    assert settings.limits.max_calls == 200  # default


def test_every_environment_variable() -> None:
    environ = {
        "VOICEBRIDGE_HOST": "0.0.0.0",
        "VOICEBRIDGE_PORT": "8443",
        "VOICEBRIDGE_PUBLIC_URL": "https://agent.example.com/",
        "VOICEBRIDGE_PIPELINE": "pipelines/echo.yaml",
        "VOICEBRIDGE_CODEC": "mulaw",
        "VOICEBRIDGE_SAMPLE_RATE": "8000",
        "VOICEBRIDGE_MAX_CALLS": "12",
        "VOICEBRIDGE_LOG_FORMAT": "json",
        "VOICEBRIDGE_LOG_LEVEL": "DEBUG",
        "VOICEBRIDGE_DRAIN_DEADLINE_S": "12.5",
        "VOICEBRIDGE_EVENTS_DIR": "/var/log/voicebridge/events",
        "VOICEBRIDGE_RECORDING_DIR": "/var/lib/voicebridge/recordings",
        "VOICEBRIDGE_VERIFY_SIGNATURES": "on",
        "VOICEBRIDGE_STREAM_TOKEN_MODE": "OFF",
        "VOICEBRIDGE_STREAM_TOKEN_TTL_S": "30",
        "VOICEBRIDGE_LEG_QUIET_S": "1.5",
        "VOICEBRIDGE_REPLAY_WINDOW_S": "600",
        "VOICEBRIDGE_STATE": "redis://redis:6379/0",
        "VOICEBRIDGE_WORKERS": "4",
        "VOICEBRIDGE_RESUME_GRACE_S": "7.5",
        "VOICEBRIDGE_HTTP_HEADER_TIMEOUT_S": "3",
        "VOICEBRIDGE_HTTP_BODY_TIMEOUT_S": "4.5",
        "VOICEBRIDGE_WEBHOOK_URL": "https://crm.example.com/hooks/calls",
        "VOICEBRIDGE_WEBHOOK_SPOOL_DIR": "/var/spool/voicebridge",
    }
    assert set(environ) == set(ENV_VARS)
    settings = load_service_settings(environ=environ)
    assert settings.host == "0.0.0.0"
    assert settings.port == 8443
    assert settings.public_url == "https://agent.example.com"
    assert settings.pipeline == "pipelines/echo.yaml"
    assert (settings.stream.codec, settings.stream.sample_rate) == ("mulaw", 8000)
    assert settings.limits.max_calls == 12
    assert (settings.log.format, settings.log.level) == ("json", "debug")
    assert settings.drain.deadline_s == 12.5
    assert (settings.http.header_timeout_s, settings.http.body_timeout_s) == (3.0, 4.5)
    assert settings.events.dir == "/var/log/voicebridge/events"
    assert settings.recording.dir == "/var/lib/voicebridge/recordings"
    security = settings.security
    assert (security.verify_signatures, security.stream_token) == ("on", "off")
    assert security.stream_token_ttl_s == 30
    assert (security.leg_quiet_s, security.replay_window_s) == (1.5, 600)
    assert (settings.state, settings.workers) == ("redis://redis:6379/0", 4)
    assert settings.resume.grace_s == 7.5
    assert settings.webhook.url == "https://crm.example.com/hooks/calls"
    assert settings.webhook.spool_dir == "/var/spool/voicebridge"


@pytest.mark.parametrize("state", ["postgres://db", "redis://", "mem"])
def test_state_must_be_memory_or_redis(state: str) -> None:
    with pytest.raises(ConfigError, match="state: must be 'memory' or a Redis URL"):
        load_service_settings(environ={"VOICEBRIDGE_STATE": state})


def test_workers_need_a_shared_state() -> None:
    with pytest.raises(ConfigError, match="cannot share 'state: memory'"):
        load_service_settings(overrides={"workers": 2})
    assert load_service_settings(overrides={"workers": 2, "resume.grace_s": 0}).workers == 2
    shared = load_service_settings(overrides={"workers": 2, "state": "redis://r:6379/0"})
    assert shared.workers == 2


def test_empty_environment_variable_counts_as_unset(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", "port: 9000\n")
    settings = load_service_settings(path, environ={"VOICEBRIDGE_PORT": ""})
    assert settings.port == 9000


def test_dotted_and_nested_overrides() -> None:
    settings = load_service_settings(
        environ={"VOICEBRIDGE_LOG_LEVEL": "error"},
        overrides={"log.level": "debug", "stream": {"sample_rate": 8000}, "port": 1234},
    )
    assert settings.log.level == "debug"
    assert settings.stream.sample_rate == 8000
    assert settings.port == 1234


def test_env_substitution_inside_the_yaml(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", "host: ${BIND_HOST:-0.0.0.0}\nport: ${BIND_PORT}\n")
    settings = load_service_settings(path, environ={"BIND_PORT": "7000"})
    assert (settings.host, settings.port) == ("0.0.0.0", 7000)
    with pytest.raises(ConfigError) as info:
        load_service_settings(path, environ={})
    assert [(i.line, i.path) for i in info.value.issues] == [(2, "port")]
    assert "BIND_PORT is not set" in info.value.issues[0].message


def test_public_url_and_stream_url() -> None:
    settings = load_service_settings(
        environ={}, overrides={"public_url": "https://agent.example.com/"}
    )
    assert settings.public_url == "https://agent.example.com"
    assert settings.stream_url() == "wss://agent.example.com/stream"
    plain = ServiceSettings(public_url="http://localhost:8080/voice")
    assert plain.stream_url() == "ws://localhost:8080/voice/stream"
    assert ServiceSettings().stream_url() is None


@pytest.mark.parametrize("url", ["agent.example.com", "ftp://x.example", "https://x?a=1"])
def test_bad_public_url(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_service_settings(environ={"VOICEBRIDGE_PUBLIC_URL": url})
    issue = info.value.issues[0]
    assert issue.file == "environment variable VOICEBRIDGE_PUBLIC_URL"
    assert issue.path == "public_url"


# --- errors ------------------------------------------------------------------------------------


def test_yaml_validation_errors_have_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path / "service.yaml",
        "host: 0.0.0.0\n"
        "port: eighty\n"
        "stream:\n"
        "  codec: opus\n"
        "  sample_rat: 8000\n"
        "limits:\n"
        "  max_calls: 0\n"
        "log:\n"
        "  level: loud\n"
        "colour: blue\n",
    )
    with pytest.raises(ConfigError) as info:
        load_service_settings(path, environ={})
    found = [(i.line, i.path) for i in info.value.issues]
    assert found == [
        (2, "port"),
        (4, "stream.codec"),
        (5, "stream.sample_rat"),
        (7, "limits.max_calls"),
        (9, "log.level"),
        (10, "colour"),
    ]
    messages = [i.message for i in info.value.issues]
    assert "(got 'eighty')" in messages[0]
    assert "did you mean 'sample_rate'?" in messages[2]
    assert all(i.file == str(path) for i in info.value.issues)
    assert str(info.value).splitlines()[0].startswith(f"{path}:2:1: port: ")


def test_env_and_override_errors_name_their_source() -> None:
    with pytest.raises(ConfigError) as info:
        load_service_settings(
            environ={"VOICEBRIDGE_PORT": "abc"}, overrides={"limits.max_calls": -1}
        )
    by_path = {i.path: i for i in info.value.issues}
    assert by_path["port"].file == "environment variable VOICEBRIDGE_PORT"
    assert by_path["port"].line is None
    assert by_path["limits.max_calls"].file == "override"


def test_cross_field_check_names_the_env_variable(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", "stream:\n  sample_rate: 16000\n")
    with pytest.raises(ConfigError) as info:
        load_service_settings(path, environ={"VOICEBRIDGE_CODEC": "mulaw"})
    issue = info.value.issues[0]
    assert (issue.line, issue.path) == (1, "stream")
    assert "only streamed at sample_rate 8000" in issue.message
    assert "VOICEBRIDGE_CODEC" in issue.message


@pytest.mark.parametrize(
    "key", ["auth_token", "plivo_auth_token", "password", "client_secret", "api_key", "apiKey"]
)
def test_secrets_are_rejected(tmp_path: Path, key: str) -> None:
    path = write(tmp_path / "s.yaml", f"port: 9000\nstream:\n  extra_headers:\n    {key}: x\n")
    with pytest.raises(ConfigError) as info:
        load_service_settings(path, environ={})
    assert len(info.value.issues) == 1
    issue = info.value.issues[0]
    assert issue.line == 4
    assert "environment" in issue.message and "secret" in issue.message


def test_top_level_secret(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", "port: 9000\nplivo:\n  auth_token: abc\n")
    with pytest.raises(ConfigError) as info:
        load_service_settings(path, environ={})
    assert [(i.line, i.path) for i in info.value.issues] == [(2, "plivo"), (3, "plivo.auth_token")]


def test_extra_header_separators_are_rejected() -> None:
    with pytest.raises(ConfigError, match="extra_headers"):
        load_service_settings(environ={}, overrides={"stream": {"extra_headers": {"a": "b,c"}}})


def test_non_mapping_file(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", "- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_service_settings(path, environ={})


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", "# nothing set\n")
    assert load_service_settings(path, environ={}).model_dump() == ServiceSettings().model_dump()


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_service_settings(tmp_path / "nope.yaml", environ={})
    assert [i.message for i in info.value.issues] == ["file not found"]


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", "port: 1\nhost: [x\n")
    with pytest.raises(ConfigError) as info:
        load_service_settings(path, environ={})
    assert info.value.issues[0].line == 3


# --- pipeline path resolution ------------------------------------------------------------------


def test_pipeline_path_prefers_cwd(empty_cwd: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    config = write(project / "configs" / "service.yaml", "pipeline: pipelines/p.yaml\n")
    in_project = write(project / "pipelines" / "p.yaml", "stages: []\n")
    settings = load_service_settings(config, environ={})
    assert settings.resolve_pipeline_path() == in_project.resolve()
    in_cwd = write(empty_cwd / "pipelines" / "p.yaml", "stages: []\n")
    assert settings.resolve_pipeline_path() == in_cwd


def test_pipeline_path_absolute_and_missing(tmp_path: Path, empty_cwd: Path) -> None:
    absolute = tmp_path / "abs.yaml"
    assert ServiceSettings(pipeline=str(absolute)).resolve_pipeline_path() == absolute
    missing = ServiceSettings(pipeline="nowhere/none.yaml").resolve_pipeline_path()
    assert missing == empty_cwd / "nowhere" / "none.yaml"


def test_pipeline_path_falls_back_to_the_source_tree(empty_cwd: Path) -> None:
    path = ServiceSettings(pipeline="configs/service.yaml").resolve_pipeline_path()
    assert path == ROOT / "configs" / "service.yaml"
