"""The command line's argparse pieces: one-line usage errors, help that shows defaults, and
the flag types that refuse bad values before anything runs."""

from __future__ import annotations

import argparse
import math
import sys
from typing import TYPE_CHECKING, Any, NoReturn

from voicebridge.cli_errors import DEBUG_ENV, CliError, ExitCode
from voicebridge.plivo.formats import StreamFormat

DEBUG_HELP = f"show the traceback of a failure (or set {DEBUG_ENV}=1)"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: {message} (see {self.prog} --help)\n")
        raise SystemExit(int(ExitCode.USAGE))


if TYPE_CHECKING:  # generic only to type checkers
    Subcommands = argparse._SubParsersAction["Parser"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends ``(default: X)`` to an option's help when it has a real default and the help
    does not state one itself; the epilog and descriptions keep their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" not in text
            and action.option_strings
            and default not in (None, False, argparse.SUPPRESS)
            and not isinstance(default, list)
        ):
            text += " (default: %(default)s)"
        return text


def command(sub: Subcommands, name: str, summary: str, **kw: Any) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` starts with its one-line summary and shows defaults."""
    kw.setdefault("description", summary[:1].upper() + summary[1:] + ".")
    parser = sub.add_parser(name, help=summary, formatter_class=HelpFormatter, **kw)
    # Also accepted after the command; SUPPRESS keeps it from undoing a --debug given before.
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return parser


def positive_float(text: str) -> float:
    """An argparse type: seconds and the like, greater than zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: seconds that may be zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of 0 or more, got {text!r}")
    return value


def port_number(text: str) -> int:
    """An argparse type: a TCP port (0 picks a free one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {value}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a count of at least one."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def stream_format(codec: str, rate: int | None) -> StreamFormat:
    """The stream format of ``--codec``/``--rate``: the rate defaults to the codec's own
    (8000 for mulaw, 16000 for l16); a pair Plivo cannot stream is a usage error."""
    if rate is None:
        rate = 8000 if codec == "mulaw" else 16000
    if codec == "mulaw" and rate != 8000:
        raise CliError(ExitCode.USAGE, f"--codec mulaw streams at 8000 Hz only, not --rate {rate}")
    return StreamFormat.from_short(codec, rate)


CODEC_HELP = "audio codec of the stream: l16 (linear PCM) or mulaw (8000 Hz only)"
RATE_HELP = "stream sample rate in Hz (default: 8000 for mulaw, 16000 for l16)"
