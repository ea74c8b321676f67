"""Every way a newcomer can get the command wrong ends the same way: one line on stderr that
says what was wrong and what to do, no traceback, and an exit code for that kind of failure."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from voicebridge import cli
from voicebridge.cli import main
from voicebridge.cli_errors import ExitCode

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
ENV.pop("VOICEBRIDGE_DEBUG", None)


def run(*args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m voicebridge ARGS`` as a user runs it; ``code`` runs before ``main`` instead
    (to hide an installed package)."""
    if code is None:
        command = [sys.executable, "-m", "voicebridge", *args]
    else:
        launcher = (
            f"{code}\nimport sys\nfrom voicebridge.cli import main\nsys.exit(main(sys.argv[1:]))"
        )
        command = [sys.executable, "-c", launcher, *args]
    return subprocess.run(
        command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120, check=False
    )


def one_line(result: subprocess.CompletedProcess[str], code: ExitCode) -> str:
    err = result.stderr.strip()
    assert "Traceback" not in result.stderr, result.stderr
    assert len(err.splitlines()) == 1, result.stderr
    assert result.returncode == int(code), (result.returncode, result.stderr)
    return err


def test_a_missing_wav_file_is_a_file_error() -> None:
    err = one_line(run("simulate", "pipelines/echo.yaml", "--wav", "missing.wav"), ExitCode.FILE)
    assert err == "voicebridge: --wav missing.wav: file not found"


def test_a_file_that_is_not_a_wav_says_so(tmp_path: Path) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("hello")
    err = one_line(run("simulate", "pipelines/echo.yaml", "--wav", str(text)), ExitCode.FILE)
    assert "not a WAV file" in err


def test_a_missing_pipeline_file_is_a_file_error() -> None:
    err = one_line(run("validate", "nothere.yaml"), ExitCode.FILE)
    assert err == "nothere.yaml: file not found"


def test_broken_yaml_indentation_is_one_line_with_its_position(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstages:\n  - type: decode\n   - type: vad\n")
    err = one_line(run("validate", str(bad)), ExitCode.CONFIG)
    assert err.startswith(f"{bad}:4:4: bad indentation")
    assert "block starting at line 3" in err


def test_an_unknown_stage_type_suggests_the_right_one(tmp_path: Path) -> None:
    bad = tmp_path / "typo.yaml"
    bad.write_text("name: x\nstages:\n  - type: decod\n")
    err = one_line(run("validate", str(bad)), ExitCode.CONFIG)
    assert f"{bad}:3:5: stages[0].type: unknown stage type 'decod'" in err
    assert "did you mean 'decode'?" in err


def test_bad_flag_values_are_usage_errors() -> None:
    err = one_line(run("simulate", "--say", "hi", "--gap", "-1"), ExitCode.USAGE)
    assert err == (
        "voicebridge simulate: argument --gap: expected a number above 0, got '-1'"
        " (see voicebridge simulate --help)"
    )
    err = one_line(run("simulate", "--say", "hi", "--rate", "44100"), ExitCode.USAGE)
    assert "argument --rate: invalid choice: 44100" in err
    err = one_line(run("bogus"), ExitCode.USAGE)
    assert "invalid choice: 'bogus'" in err


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["serve", "--port", "70000"], "--port: expected a port from 0 to 65535, got '70000'"),
        (["serve", "--port", "http"], "--port: expected a port number, got 'http'"),
        (["serve", "--workers", "0"], "--workers: expected 1 or more, got '0'"),
        (["serve", "--workers", "2.5"], "--workers: expected a whole number, got '2.5'"),
        (["simulate", "--gap", "nan"], "--gap: expected a number above 0, got 'nan'"),
        (["simulate", "--interrupt-after", "-0.5"], "expected a number of 0 or more, got '-0.5'"),
        (["simulate", "--interrupt-after", "soon"], "expected a number, got 'soon'"),
    ],
)
def test_each_number_flag_says_what_it_expected(
    args: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == int(ExitCode.USAGE)
    err = capsys.readouterr().err
    assert said in err and len(err.splitlines()) == 1, err


def test_a_codec_and_rate_plivo_cannot_stream_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["simulate", "--say", "hi", "--codec", "mulaw", "--rate", "16000"]) == 2
    assert capsys.readouterr().err == (
        "voicebridge: --codec mulaw streams at 8000 Hz only, not --rate 16000\n"
    )


def test_an_output_folder_that_does_not_exist_fails_before_the_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nope" / "call.wav"
    code = main(["simulate", "pipelines/echo.yaml", "--wav", "x.wav", "--out", str(out)])
    assert code == ExitCode.FILE
    assert capsys.readouterr().err == (
        f"voicebridge: --out {out}: folder '{out.parent}' does not exist\n"
    )


@pytest.fixture(scope="module")
def silence(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A short valid WAV file: a caller line for tests that never get to speak it."""
    import numpy as np

    from voicebridge.sim.wav import write_stereo_wav

    path = tmp_path_factory.mktemp("wav") / "silence.wav"
    write_stereo_wav(path, np.zeros(1600, np.int16), np.zeros(1600, np.int16), 16000)
    return str(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_calling_a_service_that_is_not_running_is_a_connect_error(silence: str) -> None:
    port = free_port()  # closed again: nothing listens there
    err = one_line(
        run("call", f"http://127.0.0.1:{port}", "--wav", "pipelines/echo.yaml"), ExitCode.FILE
    )
    assert "not a WAV file" in err  # the caller's audio is checked before dialling
    result = run("call", f"http://127.0.0.1:{port}", "--wav", silence)
    err = one_line(result, ExitCode.CONNECT)
    assert err.startswith(f"voicebridge: call: cannot reach http://127.0.0.1:{port}/answer (")
    assert err.endswith("is the service running there? (start one with: voicebridge serve)")


def test_a_stream_url_nobody_listens_on_is_a_connect_error(
    silence: str, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    assert main(["call", f"ws://127.0.0.1:{port}/stream", "--wav", silence]) == 5
    err = capsys.readouterr().err
    assert err.startswith(f"voicebridge: call: cannot connect to ws://127.0.0.1:{port}/stream (")


def test_a_url_that_is_not_http_or_ws_is_a_usage_error(
    silence: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["call", "ftp://agent.example", "--wav", silence]) == 2
    assert "expected an http://, https://, ws:// or wss:// URL" in capsys.readouterr().err


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_serve_on_a_port_in_use_fails_before_loading_models(taken_port: int) -> None:
    # offline.yaml would load Whisper and Piper first; the port is checked before the file is
    # even read, so a pipeline that does not exist shows it.
    result = run("serve", "no-such-pipeline.yaml", "--port", str(taken_port))
    err = one_line(result, ExitCode.PORT)
    assert (
        err == f"voicebridge: port {taken_port} is in use; pass --port N or stop the other process"
    )


def test_a_stage_that_cannot_start_names_itself(tmp_path: Path) -> None:
    pipeline = tmp_path / "voice.yaml"
    pipeline.write_text(
        "name: voice\nstages:\n  - type: decode\n  - type: vad\n  - type: whisper\n"
        "  - type: rules\n  - type: piper\n    params:\n      speaker: 7\n  - type: encode\n"
    )
    result = run("serve", str(pipeline), "--port", str(free_port()), "--log-format", "json")
    err = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr and result.returncode == ExitCode.STARTUP
    assert err == (
        f"voicebridge: {pipeline}:7: stage 'piper' could not start: piper: speaker 7 out of "
        "range; the voice has 1 speaker(s)"
    )


def test_a_missing_extra_says_what_to_install() -> None:
    hide = "import sys\nsys.modules['faster_whisper'] = None"
    result = run("validate", "pipelines/offline.yaml", code=hide)
    err = one_line(result, ExitCode.MISSING_EXTRA)
    assert "stage type 'whisper' needs optional dependencies that are not installed" in err
    assert err.endswith("install them with: pip install 'voicebridge[offline]'")
    result = run(
        "simulate",
        "pipelines/echo.yaml",
        "--say",
        "hi",
        code="import sys\nsys.modules['hibari'] = None",
    )
    err = one_line(result, ExitCode.MISSING_EXTRA)
    assert err.startswith("voicebridge: --say needs the offline voice")
    assert "pip install 'voicebridge[offline]', or give the caller's audio with --wav FILE" in err


def test_an_internal_error_points_at_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(args: object) -> int:
        raise RuntimeError("the frobnicator\nis\tbroken")

    monkeypatch.setattr(cli, "_stages", broken)
    monkeypatch.delenv("VOICEBRIDGE_DEBUG", raising=False)
    assert main(["stages"]) == ExitCode.INTERNAL
    assert capsys.readouterr().err == (
        "voicebridge: internal error: RuntimeError: the frobnicator is broken; "
        "run with --debug (or VOICEBRIDGE_DEBUG=1) for the traceback\n"
    )
    assert main(["stages", "--debug"]) == ExitCode.INTERNAL
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and "RuntimeError: the frobnicator" in err
    monkeypatch.setenv("VOICEBRIDGE_DEBUG", "1")
    assert main(["stages"]) == ExitCode.INTERNAL
    assert "Traceback" in capsys.readouterr().err


def test_ctrl_c_exits_130_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_stages", interrupted)
    assert main(["stages"]) == ExitCode.INTERRUPTED == 130
    assert capsys.readouterr().err == "voicebridge: interrupted\n"
