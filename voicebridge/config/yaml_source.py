"""Loading YAML into plain Python data while remembering where every key came from.

ruamel's round-trip loader keeps line/column marks on its containers; we copy the data into plain
dicts, lists and scalars (so pydantic and the rest of the code never see ruamel types) and keep a
side table of positions, so a validation error deep in ``stages[2].params`` can still name its line.

``${VAR}`` / ``${VAR:-default}`` in string values are replaced from the environment here, because
secrets belong in the environment and never in the file.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.scalarbool import ScalarBoolean

from voicebridge.config.errors import ConfigError, ConfigIssue, KeyPath, format_path

DEFAULT_MAX_BYTES = 1 << 20
# Guards against alias bombs ("billion laughs") and runaway nesting; real configs are far smaller.
MAX_NODES = 100_000
MAX_DEPTH = 64

_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class EnvSubstitutionError(ValueError):
    """A ``${...}`` reference that cannot be resolved; the message says how to fix it."""


def substitute_env(text: str, environ: Mapping[str, str]) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in ``text``; ``$${`` stands for a literal ``${``.

    ``${VAR:-default}`` uses the default when VAR is unset *or empty*, as a shell does.
    """
    if "${" not in text:
        return text
    out: list[str] = []
    pos = 0
    while True:
        start = text.find("${", pos)
        if start < 0:
            out.append(text[pos:])
            return "".join(out)
        if start - 1 >= pos and text[start - 1] == "$":
            out.append(text[pos : start - 1] + "${")
            pos = start + 2
            continue
        end = text.find("}", start + 2)
        if end < 0:
            raise EnvSubstitutionError(
                f"unterminated '${{' in {text!r} (write '$${{' for a literal)"
            )
        body = text[start + 2 : end]
        if "{" in body:
            raise EnvSubstitutionError(f"nested '${{...}}' is not supported in {text!r}")
        name, has_default, default = body.partition(":-")
        if not _VAR_NAME.match(name):
            raise EnvSubstitutionError(
                f"invalid environment variable name {name!r} in {text!r}"
                " (expected ${NAME} or ${NAME:-default})"
            )
        value = environ.get(name)
        if has_default:
            if not value:
                value = default
        elif value is None:
            raise EnvSubstitutionError(
                f"environment variable {name} is not set"
                f" (set it, or give a default: ${{{name}:-default}})"
            )
        out.append(text[pos:start] + value)
        pos = end + 1


@dataclass
class YamlDocument:
    """Plain data of one YAML document, its source name and the position of every key path.

    ``issues`` holds problems that still left usable data (an unset ``${VAR}``, an unsupported tag),
    so a caller can report them together with its own validation problems.
    """

    source: str
    data: Any
    positions: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    issues: list[ConfigIssue] = field(default_factory=list)

    def locate(self, path: KeyPath) -> tuple[int | None, int | None]:
        """1-based (line, column) of ``path``, or of its nearest ancestor that has a position."""
        path = tuple(path)
        for end in range(len(path), -1, -1):
            pos = self.positions.get(path[:end])
            if pos is not None:
                return pos
        return (None, None)

    def line_of(self, path: KeyPath) -> int | None:
        return self.locate(path)[0]

    def issue(self, path: KeyPath, message: str) -> ConfigIssue:
        """A ConfigIssue for ``path`` in this document, positioned at its line."""
        line, column = self.locate(path)
        return ConfigIssue(self.source, line, column, format_path(path), message)

    def raise_for_issues(self) -> None:
        if self.issues:
            raise ConfigError(self.issues)


class _Fatal(Exception):
    def __init__(self, issue: ConfigIssue) -> None:
        super().__init__(str(issue))
        self.issue = issue


class _Converter:
    """Copies ruamel's round-trip tree into plain data, recording positions and env issues."""

    def __init__(self, doc: YamlDocument, environ: Mapping[str, str]) -> None:
        self.doc = doc
        self.environ = environ
        self.nodes = 0
        self.active: set[int] = set()

    def fatal(self, path: KeyPath, message: str) -> _Fatal:
        return _Fatal(self.doc.issue(path, message))

    def convert(self, node: Any, path: KeyPath) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fatal(path, f"document has more than {MAX_NODES} values (alias expansion?)")
        if len(path) > MAX_DEPTH:
            raise self.fatal(path, f"document is nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, CommentedMap | CommentedSeq):
            if id(node) in self.active:
                raise self.fatal(path, "recursive alias: a value contains itself")
            self.active.add(id(node))
            try:
                if isinstance(node, CommentedMap):
                    return self._mapping(node, path)
                return self._sequence(node, path)
            finally:
                self.active.discard(id(node))
        return self._scalar(node, path)

    def _mapping(self, node: CommentedMap, path: KeyPath) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        own = node.lc.data  # only the mapping's own keys; merged (<<) keys fall back to the parent
        for raw_key, value in node.items():
            key = self._key(raw_key, path)
            child = (*path, key)
            mark = own.get(raw_key)
            if mark is not None:
                self.doc.positions[child] = (mark[0] + 1, mark[1] + 1)
            result[key] = self.convert(value, child)
        return result

    def _sequence(self, node: CommentedSeq, path: KeyPath) -> list[Any]:
        result: list[Any] = []
        marks = node.lc.data
        for index, value in enumerate(node):
            child = (*path, index)
            mark = marks.get(index) if isinstance(marks, dict) else None
            if mark is not None:
                self.doc.positions[child] = (mark[0] + 1, mark[1] + 1)
            result.append(self.convert(value, child))
        return result

    def _key(self, raw: Any, path: KeyPath) -> Hashable:
        if raw is None or isinstance(raw, str | int | float | date):
            return self._plain_scalar(raw)
        raise self.fatal(path, f"unsupported mapping key {raw!r}: keys must be plain scalars")

    @staticmethod
    def _plain_scalar(value: Any) -> Any:
        if isinstance(value, ScalarBoolean | bool):
            return bool(value)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value)
        if isinstance(value, str):
            return str(value)
        return value

    def _scalar(self, node: Any, path: KeyPath) -> Any:
        if isinstance(node, TaggedScalar):
            self.doc.issues.append(self.doc.issue(path, f"unsupported YAML tag {node.tag.value}"))
            return None
        if node is None or isinstance(node, bool | int | float | date):
            return self._plain_scalar(node)
        if isinstance(node, str):
            try:
                return substitute_env(str(node), self.environ)
            except EnvSubstitutionError as exc:
                self.doc.issues.append(self.doc.issue(path, str(exc)))
                return str(node)
        self.doc.issues.append(
            self.doc.issue(path, f"unsupported YAML value of type {type(node).__name__}")
        )
        return None


def _plain_problem(problem: str, context: str | None, context_line: int | None) -> str | None:
    """The YAML parser's problem in a newcomer's words, or None to keep the parser's own."""
    opened = f" (opened at line {context_line})" if context_line is not None else ""
    if problem.startswith("expected <block end>, but found"):
        where = f" at line {context_line}" if context_line is not None else ""
        return (
            "bad indentation: this line is indented differently from the lines of the block"
            f" it belongs to (the block starting{where}); align it with its siblings"
        )
    if problem == "mapping values are not allowed here":
        return (
            "unexpected ':': the line is indented too far, or a value containing ': ' needs quotes"
        )
    if "'\\t'" in problem and "cannot start any token" in problem:
        return "a tab character: YAML indents with spaces only"
    if problem == "could not find expected ':'":
        where = f" after the key at line {context_line}" if context_line is not None else ""
        return f"expected 'key: value': a ':' is missing{where}, or the indentation is off"
    if context is not None and "quoted scalar" in context:
        return f"a quoted string is never closed{opened}"
    if context is not None and "flow sequence" in context:
        return f"a '[' list is never closed with ']'{opened}"
    if context is not None and "flow mapping" in context:
        return f"a '{{' mapping is never closed with '}}'{opened}"
    return None


def _syntax_issue(source: str, exc: YAMLError) -> ConfigIssue:
    if not isinstance(exc, MarkedYAMLError):
        return ConfigIssue(source, None, None, "", f"invalid YAML: {exc}")
    mark = exc.problem_mark or exc.context_mark
    message = exc.problem or exc.context or "invalid YAML"
    context_mark = exc.context_mark
    context_line = context_mark.line + 1 if context_mark is not None else None
    plain = _plain_problem(message, exc.context, context_line) if exc.problem else None
    if plain is not None:
        message = plain
    elif exc.context and exc.problem and context_mark is not None:
        message += f" ({exc.context} at line {context_line})"
    if type(exc).__name__ == "DuplicateKeyError":
        message = f"duplicate key: {message}"
    if mark is None:
        return ConfigIssue(source, None, None, "", message)
    return ConfigIssue(source, mark.line + 1, mark.column + 1, "", message)


def _size_issue(source: str, size: int, max_bytes: int) -> ConfigIssue:
    return ConfigIssue(
        source, None, None, "", f"file is {size} bytes, larger than the limit of {max_bytes} bytes"
    )


def load_yaml_text(
    text: str,
    source: str = "<string>",
    *,
    environ: Mapping[str, str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> YamlDocument:
    """Parse one YAML document into plain data with positions and env substitution.

    Raises ConfigError for problems that leave no usable data (size, syntax, duplicate keys);
    softer problems are returned in ``YamlDocument.issues``.
    """
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > max_bytes:
        raise ConfigError([_size_issue(source, size, max_bytes)])
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        raw = yaml.load(text)
    except YAMLError as exc:
        raise ConfigError([_syntax_issue(source, exc)]) from None
    except RecursionError:
        raise ConfigError([ConfigIssue(source, None, None, "", "YAML nested too deeply")]) from None
    doc = YamlDocument(source=source, data=None)
    if isinstance(raw, CommentedMap | CommentedSeq):
        doc.positions[()] = (raw.lc.line + 1, raw.lc.col + 1)
    elif raw is not None:
        doc.positions[()] = (1, 1)
    converter = _Converter(doc, os.environ if environ is None else environ)
    try:
        doc.data = converter.convert(raw, ())
    except _Fatal as exc:
        raise ConfigError([exc.issue]) from None
    return doc


def load_yaml_file(
    path: str | Path,
    *,
    environ: Mapping[str, str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> YamlDocument:
    """Read and parse a YAML file; issues name ``path`` as given, so errors read naturally."""
    source = str(path)
    file = Path(path)
    try:
        size = file.stat().st_size
        if not file.is_file():
            what = "a directory" if file.is_dir() else "not a regular file"
            raise ConfigError(
                [ConfigIssue(source, None, None, "", f"{what}, not a YAML file", kind="file")]
            )
        if size > max_bytes:
            raise ConfigError([_size_issue(source, size, max_bytes)])
        with file.open("rb") as handle:
            data = handle.read(max_bytes + 1)  # the file may grow between stat and read
    except FileNotFoundError:
        raise ConfigError(
            [ConfigIssue(source, None, None, "", "file not found", kind="file")]
        ) from None
    except OSError as exc:
        message = f"cannot read file: {exc.strerror or exc}"
        raise ConfigError([ConfigIssue(source, None, None, "", message, kind="file")]) from None
    if len(data) > max_bytes:
        raise ConfigError([_size_issue(source, len(data), max_bytes)])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        message = f"file is not UTF-8 text (invalid byte at offset {exc.start})"
        raise ConfigError([ConfigIssue(source, line, None, "", message)]) from None
    return load_yaml_text(text, source, environ=environ, max_bytes=max_bytes)


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """Field names of the (nested) model that ``loc`` points into, for "did you mean" hints."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        info = current.model_fields.get(part) if isinstance(part, str) else None
        if info is None:
            return None
        candidates = [info.annotation, *get_args(info.annotation)]
        current = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [info.alias or name for name, info in current.model_fields.items()]
    return None


def validation_issues(
    doc: YamlDocument,
    exc: ValidationError,
    base: KeyPath,
    model: type[BaseModel],
    *,
    what: str = "key",
    extra_names: tuple[str, ...] = (),
) -> list[ConfigIssue]:
    """Turn each pydantic error into a ConfigIssue at the YAML line of ``base + loc``.

    ``what`` names the kind of key in messages ("parameter", "session option"); ``extra_names``
    are more keys a misspelt unknown key may have been meant as.
    """
    issues: list[ConfigIssue] = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        kind = error["type"]
        if kind == "extra_forbidden" and loc:
            known = _fields_at(model, loc[:-1]) or []
            if len(loc) == 1:
                known = [*known, *extra_names]
            message = f"unknown {what} {loc[-1]!r}"
            close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            if close:
                message += f" (did you mean {close[0]!r}?)"
            if known:
                message += f"; known: {', '.join(sorted(known))}"
        elif kind == "missing":
            message = f"missing required {what} {loc[-1]!r}" if loc else error["msg"]
        else:
            message = error["msg"].removeprefix("Value error, ")
            if not isinstance(error.get("input"), dict):  # a whole mapping is noise, not a clue
                message += f" (got {_short_repr(error.get('input'))})"
        issues.append(doc.issue((*base, *loc), message))
    return issues
