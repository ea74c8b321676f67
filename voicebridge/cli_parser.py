"""The command line's argparse pieces: one-line usage errors, help that shows defaults, and
the flag types that refuse bad values before anything runs."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

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


N = TypeVar("N", int, float)


def _number_type(
    convert: Callable[[str], N], noun: str, accepts: Callable[[N], bool], expected: str
) -> Callable[[str], N]:
    """An argparse type: ``convert`` reads the text (else "expected <noun>"), and ``accepts``
    says whether the value is in range (else "expected <expected>"). Both errors quote the text
    as typed, so a ``nan`` or ``08080`` is shown as the user wrote it."""

    def parse(text: str) -> N:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not accepts(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


# Seconds and the like, greater than zero.
positive_float = _number_type(
    float, "a number", lambda v: math.isfinite(v) and v > 0, "a number above 0"
)
# Seconds that may be zero.
non_negative_float = _number_type(
    float, "a number", lambda v: math.isfinite(v) and v >= 0, "a number of 0 or more"
)
# A TCP port (0 picks a free one).
port_number = _number_type(
    int, "a port number", lambda v: 0 <= v <= 65535, "a port from 0 to 65535"
)
# A count of at least one.
positive_int = _number_type(int, "a whole number", lambda v: v >= 1, "1 or more")


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
