"""How the ``voicebridge`` command fails: one line on stderr and an exit code per kind of failure.

A script (or a newcomer) must tell "the file is missing" from "the server is down" without
reading a traceback, so every failure the command can foresee is a :class:`CliError` carrying
one of the :class:`ExitCode` values below, raised where the failure is understood. Whatever is
left (a bug) becomes :data:`ExitCode.INTERNAL`, with the traceback only under ``--debug``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Final

DEBUG_ENV: Final = "VOICEBRIDGE_DEBUG"


class ExitCode(enum.IntEnum):
    """The command's exit statuses; documented in docs/cli.md and the ``--help`` epilog."""

    OK = 0
    FAILED = 1  # the command ran and reports a failure (protocol errors, a failed scenario)
    USAGE = 2  # a bad flag or flag value (argparse uses 2 as well)
    CONFIG = 3  # a pipeline or settings file is invalid
    FILE = 4  # a file named on the command line is missing, unreadable or unwritable
    CONNECT = 5  # the server to call cannot be reached or refused the call
    PORT = 6  # the port to serve on is in use or cannot be bound
    MISSING_EXTRA = 7  # an optional dependency is not installed
    STARTUP = 8  # a stage could not start (credentials, model, provider)
    INTERNAL = 70  # a bug: run with --debug for the traceback
    INTERRUPTED = 130  # Ctrl-C


# (code, meaning, example): the table in docs/cli.md and the --help epilog.
EXIT_CODE_TABLE: Final[tuple[tuple[ExitCode, str, str], ...]] = (
    (ExitCode.OK, "success", "validate: every file is valid"),
    (ExitCode.FAILED, "ran, but the result is a failure", "test: a scenario failed"),
    (ExitCode.USAGE, "bad flag or flag value", "simulate --codec mulaw --rate 16000"),
    (ExitCode.CONFIG, "pipeline or settings file invalid", "unknown stage type, bad YAML"),
    (ExitCode.FILE, "file missing, unreadable or unwritable", "simulate --wav missing.wav"),
    (ExitCode.CONNECT, "cannot reach or was refused by a server", "call to a stopped service"),
    (ExitCode.PORT, "cannot listen on the port", "serve when 8080 is in use"),
    (ExitCode.MISSING_EXTRA, "optional dependency not installed", "piper without [offline]"),
    (ExitCode.STARTUP, "a stage could not start", "llm without OPENAI_API_KEY"),
    (ExitCode.INTERNAL, "internal error (a bug)", "rerun with --debug and report it"),
    (ExitCode.INTERRUPTED, "interrupted", "Ctrl-C"),
)


class CliError(Exception):
    """A failure the command understands: ``message`` is the one line the user sees (what was
    wrong and what to do), ``code`` the exit status."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def exit_code_epilog() -> str:
    """The exit-code table as plain text for ``voicebridge --help``."""
    lines = ["exit codes:"]
    lines += [
        f"  {int(code):>3}  {meaning} (e.g. {example})"
        for code, meaning, example in EXIT_CODE_TABLE
    ]
    lines.append(f"Tracebacks are shown only with --debug (or {DEBUG_ENV}=1).")
    return "\n".join(lines)


def config_exit_code(kinds: Iterable[str]) -> ExitCode:
    """The exit code for config problems of these kinds (``ConfigIssue.kind``): a content
    problem wins over a missing extra, which wins over a missing file."""
    found = set(kinds)
    if "extra" in found and "invalid" not in found:
        return ExitCode.MISSING_EXTRA
    if found == {"file"}:
        return ExitCode.FILE
    return ExitCode.CONFIG
