"""Pipeline files: which stages a call runs, in order, with validated parameters.

Everything is checked at load time, before any call is taken, and every problem in the file is
reported at once with its line, because a config error found mid-call is a dropped call. Once
every stage loads, their order is checked too (``pipeline_flow``): a pipeline that would load and
then give silent calls is as much an error as a misspelt key.

Shape of a file::

    name: echo
    description: Plays each caller utterance back.
    session:                     # optional, see SessionOptions
      barge_in: {guard_ms: 200}
    outbound:                    # optional, see OutboundOptions (docs/outbound.md)
      on_machine: voicemail
      voicemail: "Hi {name}, please call us back."
    subscribers:                 # optional: your classes that get every call's events
      - type: my_package.audit:AuditTrail
    stages:
      - type: decode
      - type: vad
        params: {aggressiveness: 2}
      - type: vad                # parameters may also be written inline,
        name: vad2               # next to `type` (one style per stage)
        aggressiveness: 3
"""

from __future__ import annotations

import builtins
import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from voicebridge.call.options import SessionOptions
from voicebridge.call.outbound_options import OutboundOptions
from voicebridge.config.errors import ConfigError, ConfigIssue, KeyPath, format_path
from voicebridge.config.pipeline_flow import flow_issues
from voicebridge.config.subscribers import (
    SubscriberError,
    SubscriberSpec,
    check_params,
    resolve_subscriber,
)
from voicebridge.config.yaml_source import (
    DEFAULT_MAX_BYTES,
    YamlDocument,
    load_yaml_file,
    load_yaml_text,
    validation_issues,
)

if TYPE_CHECKING:  # runtime import is lazy: keeps voicebridge.config free of import cycles
    from voicebridge.runtime.stage import Stage, StageParams

Resolver = Callable[[str], "type[Stage]"]

TOP_LEVEL_KEYS = ("name", "description", "session", "outbound", "subscribers", "stages")
STAGE_KEYS = ("type", "name", "params")


@dataclass
class StageSpec:
    """One validated stage of a pipeline; ``create`` makes a fresh instance for each call."""

    type: str
    name: str
    cls: builtins.type[Stage]
    params: StageParams
    line: int | None = None

    def create(self) -> Stage:
        stage = self.cls(self.params)
        stage.name = self.name  # logs and errors then use the label from the file
        return stage


@dataclass
class PipelineSpec:
    """A loaded pipeline file: validated stage specs and session options."""

    name: str
    description: str
    path: Path | None
    stages: list[StageSpec]
    session: SessionOptions = field(default_factory=lambda: _default_session())
    subscribers: list[SubscriberSpec] = field(default_factory=list)
    # Outbound calls' machine detection and voicemail (docs/outbound.md); None: not set.
    outbound: OutboundOptions | None = None
    # Problems that do not stop the pipeline from loading (a custom stage that declares no
    # frames, so its place cannot be checked); `validate` prints them, `serve` logs them.
    warnings: list[ConfigIssue] = field(default_factory=list)

    def create_stages(self) -> list[Stage]:
        """Fresh stage instances for one call, in pipeline order."""
        return [spec.create() for spec in self.stages]

    def create_subscribers(self) -> list[Any]:
        """Fresh instances of the file's event subscribers for one call."""
        return [spec.create() for spec in self.subscribers]

    async def preload(self) -> None:
        """Load shared resources of every stage once, at service start-up. Raises
        StageStartError naming the stage that failed (the stage's own error is its cause)."""
        for spec in self.stages:
            try:
                await spec.cls.preload(spec.params)
            except Exception as exc:
                raise StageStartError(spec, exc, self.path) from exc


class StageStartError(Exception):
    """A stage could not load what its calls share (a model, a voice, credentials)."""

    def __init__(self, spec: StageSpec, cause: Exception, path: Path | None = None) -> None:
        where = str(path) if path is not None else "<pipeline>"
        if spec.line is not None:
            where += f":{spec.line}"
        super().__init__(f"{where}: stage {spec.name!r} could not start: {cause}")
        self.stage = spec.name


def _default_session() -> SessionOptions:
    return SessionOptions.model_validate({})


def _default_resolver(type_name: str) -> type[Stage]:
    from voicebridge.runtime.registry import resolve_stage

    return resolve_stage(type_name)


_YAML_KINDS = {
    dict: "a mapping",
    list: "a list",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
}


def _type_label(value: Any) -> str:
    """How a YAML author would name the kind of value they wrote."""
    if value is None:
        return "empty (null)"
    return _YAML_KINDS.get(type(value), f"a {type(value).__name__}")


class _Validator:
    """Collects every issue of one pipeline document instead of stopping at the first."""

    def __init__(self, doc: YamlDocument, resolver: Resolver) -> None:
        self.doc = doc
        self.resolver = resolver
        self.issues: list[ConfigIssue] = []
        self.stages_complete = False  # every stage loaded without a problem: order is checkable

    def add(self, path: KeyPath, message: str) -> None:
        self.issues.append(self.doc.issue(path, message))

    def top_level(self, data: Any) -> dict[str, Any] | None:
        if data is None:
            self.add((), "the file is empty; a pipeline needs at least a 'stages' list")
            return None
        if not isinstance(data, dict):
            self.add(
                (),
                f"a pipeline file must be a mapping with a 'stages' list, not {_type_label(data)}",
            )
            return None
        for key in data:
            if key not in TOP_LEVEL_KEYS:
                message = f"unknown key {key!r}"
                close = difflib.get_close_matches(str(key), TOP_LEVEL_KEYS, n=1, cutoff=0.6)
                if close:
                    message += f" (did you mean {close[0]!r}?)"
                self.add((key,), f"{message}; allowed: {', '.join(TOP_LEVEL_KEYS)}")
        return data

    def text_field(self, data: dict[str, Any], key: str, default: str) -> str:
        value = data.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            self.add((key,), f"must be a string, not {_type_label(value)}")
            return default
        return value

    def session(self, data: dict[str, Any]) -> SessionOptions:
        raw = data.get("session")
        if raw is None:
            return _default_session()
        if not isinstance(raw, dict):
            self.add(("session",), f"must be a mapping, not {_type_label(raw)}")
            return _default_session()
        try:
            return SessionOptions.model_validate(raw)
        except ValidationError as exc:
            self.issues += validation_issues(
                self.doc, exc, ("session",), SessionOptions, what="session option"
            )
            return _default_session()

    def outbound(self, data: dict[str, Any]) -> OutboundOptions | None:
        raw = data.get("outbound")
        if raw is None:
            return None
        if not isinstance(raw, dict):
            self.add(("outbound",), f"must be a mapping, not {_type_label(raw)}")
            return None
        try:
            return OutboundOptions.model_validate(raw)
        except ValidationError as exc:
            self.issues += validation_issues(
                self.doc, exc, ("outbound",), OutboundOptions, what="outbound option"
            )
            return None

    def subscribers(self, data: dict[str, Any]) -> list[SubscriberSpec]:
        items = data.get("subscribers")
        if items is None:
            return []
        if not isinstance(items, list):
            self.add(("subscribers",), f"must be a list, not {_type_label(items)}")
            return []
        specs: list[SubscriberSpec] = []
        for index, item in enumerate(items):
            here: tuple[str, int] = ("subscribers", index)
            if not isinstance(item, dict) or not isinstance(item.get("type"), str):
                self.add(here, "a subscriber must be a mapping with a 'type' ('module:Class')")
                continue
            unknown = sorted(set(item) - {"type", "params"})
            if unknown:
                self.add(here, f"unknown key(s) {', '.join(unknown)}; allowed: type, params")
                continue
            raw = item.get("params") or {}
            if not isinstance(raw, dict):
                self.add((*here, "params"), f"must be a mapping, not {_type_label(raw)}")
                continue
            try:
                cls = resolve_subscriber(item["type"])
                params = check_params(cls, raw)
            except SubscriberError as exc:
                self.add((*here, "type"), f"subscriber {item['type']!r}: {exc}")
                continue
            specs.append(SubscriberSpec(item["type"], cls, params, self.doc.line_of(here)))
        return specs

    def stages(self, data: dict[str, Any]) -> list[StageSpec]:
        if "stages" not in data:
            self.add((), "missing required key 'stages' (a list of stages, each with a 'type')")
            return []
        items = data["stages"]
        if not isinstance(items, list):
            self.add(("stages",), f"must be a list of stages, not {_type_label(items)}")
            return []
        if not items:
            self.add(("stages",), "a pipeline needs at least one stage")
            return []
        specs: list[StageSpec] = []
        seen: dict[str, int] = {}
        for index, item in enumerate(items):
            spec = self.stage(index, item, seen)
            if spec is not None:
                specs.append(spec)
        self.stages_complete = len(specs) == len(items) and not any(
            _under(issue.path, "stages") for issue in self.issues
        )
        return specs

    def stage(self, index: int, item: Any, seen: dict[str, int]) -> StageSpec | None:
        here: tuple[str, int] = ("stages", index)
        if not isinstance(item, dict):
            hint = f" (write '- type: {item}')" if isinstance(item, str) else ""
            self.add(
                here, f"a stage must be a mapping with a 'type', not {_type_label(item)}{hint}"
            )
            return None

        type_name = item.get("type")
        cls: type[Stage] | None = None
        if "type" not in item:
            self.add(here, "missing required key 'type'")
        elif not isinstance(type_name, str) or not type_name.strip():
            self.add((*here, "type"), f"must be a non-empty string, got {type_name!r}")
            type_name = None
        else:
            try:
                cls = self.resolver(type_name)
            except (ValueError, ImportError) as exc:
                self.add((*here, "type"), str(exc))
                if getattr(exc, "extra", None):  # MissingExtraError: install, don't edit
                    self.issues[-1].kind = "extra"

        name = self._stage_name(here, item, type_name, seen)
        params_base, raw_params = self._raw_params(here, item)
        if cls is None or type_name is None or raw_params is None:
            return None
        try:
            params = cls.Params.model_validate(raw_params)
        except ValidationError as exc:
            extra = ("params",) if params_base == here else ()
            self.issues += validation_issues(
                self.doc, exc, params_base, cls.Params, what="parameter", extra_names=extra
            )
            return None
        return StageSpec(
            type=type_name,
            name=name or type_name,
            cls=cls,
            params=params,
            line=self.doc.line_of(here),
        )

    def _stage_name(
        self, here: tuple[str, int], item: dict[str, Any], type_name: Any, seen: dict[str, int]
    ) -> str | None:
        if "name" in item:
            name, where = item["name"], (*here, "name")
            if not isinstance(name, str) or not name.strip():
                self.add(where, f"must be a non-empty string, got {name!r}")
                return None
        elif isinstance(type_name, str):
            name, where = type_name, (*here, "type")
        else:
            return None
        first = seen.setdefault(name, here[1])
        if first != here[1]:
            other = ("stages", first)
            line = self.doc.line_of(other)
            at = f", line {line}" if line is not None else ""
            self.add(
                where,
                f"duplicate stage name {name!r} (also {format_path(other)}{at}); "
                "give each stage a distinct 'name'",
            )
        return name

    def _raw_params(
        self, here: KeyPath, item: dict[str, Any]
    ) -> tuple[KeyPath, dict[Any, Any] | None]:
        inline = {key: value for key, value in item.items() if key not in STAGE_KEYS}
        if "params" not in item:
            return here, inline
        base: KeyPath = (*here, "params")
        if inline:
            keys = ", ".join(repr(key) for key in inline)
            self.add(
                (*here, next(iter(inline))),
                f"parameters given both under 'params' and inline ({keys}); use one style",
            )
            return base, None
        raw = item["params"]
        if raw is None:
            return base, {}
        if not isinstance(raw, dict):
            self.add(
                base, f"must be a mapping of parameter names to values, not {_type_label(raw)}"
            )
            return base, None
        return base, raw


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((prefix + ".", prefix + "["))


def _build(doc: YamlDocument, resolver: Resolver | None, path: Path | None) -> PipelineSpec:
    validator = _Validator(doc, resolver or _default_resolver)
    data = validator.top_level(doc.data)
    spec: PipelineSpec | None = None
    order_errors: list[ConfigIssue] = []
    if data is not None:
        default_name = path.stem if path is not None else "pipeline"
        name = validator.text_field(data, "name", default_name)
        description = validator.text_field(data, "description", "")
        session = validator.session(data)
        subscribers = validator.subscribers(data)
        stages = validator.stages(data)
        outbound = validator.outbound(data)
        spec = PipelineSpec(name, description, path, stages, session, subscribers, outbound)
        if validator.stages_complete:  # an order check of a half-loaded list would mislead
            order_errors, spec.warnings = flow_issues(doc, stages)
            validator.issues += order_errors
    # An unset ${VAR} already explains any later complaint about the same value; say it once.
    env_paths = [issue.path for issue in doc.issues]
    issues = doc.issues + [
        issue
        for issue in validator.issues
        if not any(_under(issue.path, prefix) for prefix in env_paths if prefix)
    ]
    if issues or spec is None:
        # Order errors next to the warnings about stages whose flow is unknown: they may explain
        # each other.
        context = spec.warnings if spec is not None and order_errors else []
        raise ConfigError(issues + context)
    return spec


def load_pipeline_text(
    text: str,
    source_name: str = "<string>",
    *,
    environ: Mapping[str, str] | None = None,
    resolver: Resolver | None = None,
    path: str | Path | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> PipelineSpec:
    """Load a pipeline from YAML text; raises ConfigError listing every problem found."""
    doc = load_yaml_text(text, source_name, environ=environ, max_bytes=max_bytes)
    return _build(doc, resolver, Path(path) if path is not None else None)


def load_pipeline(
    path: str | Path,
    *,
    environ: Mapping[str, str] | None = None,
    resolver: Resolver | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> PipelineSpec:
    """Load a pipeline file; raises ConfigError listing every problem found, with lines."""
    doc = load_yaml_file(path, environ=environ, max_bytes=max_bytes)
    return _build(doc, resolver, Path(path))
