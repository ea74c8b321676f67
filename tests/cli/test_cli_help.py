"""Every option of every command explains itself and its default in ``--help``."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from voicebridge.cli import build_parser, main
from voicebridge.cli_errors import EXIT_CODE_TABLE, ExitCode
from voicebridge.cli_parser import HelpFormatter


def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from parsers(sub)


def test_every_option_has_help_that_states_its_default() -> None:
    missing: list[str] = []
    for parser in parsers(build_parser()):
        formatter = HelpFormatter(parser.prog)
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._VersionAction):
                continue
            name = f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
            if isinstance(action, argparse._SubParsersAction):
                continue  # each command has its own summary (below)
            text = formatter._get_help_string(action) or ""
            if not text.strip():
                missing.append(f"{name}: no help")
                continue
            takes_value = action.option_strings and action.nargs != 0
            optional = takes_value and not action.required
            if optional and action.dest not in {"say", "wav"} and "default" not in text:
                missing.append(f"{name}: no default in {text!r}")
    assert missing == []


def test_every_command_has_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    top = build_parser()
    for parser in list(parsers(top))[1:]:
        assert parser.description, parser.prog
    assert main(["xml", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Print the answer XML that starts a stream (the same XML /answer returns)." in out


def test_the_exit_codes_are_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for code, meaning, _ in EXIT_CODE_TABLE:
        assert f"{int(code):>3}  {meaning}" in out
    assert len({int(code) for code, _, _ in EXIT_CODE_TABLE}) == len(ExitCode)
