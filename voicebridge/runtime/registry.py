"""Resolving a pipeline's stage ``type`` string to a Stage class.

Three sources, tried in this order:

* built-in names (``BUILTIN_STAGES``), imported only when a pipeline uses them, so a missing
  optional dependency (a speech model, a cloud SDK) breaks only the pipelines that need it;
* entry points in the ``voicebridge.stages`` group, so a separately installed package can add
  stages;
* ``package.module:Class`` strings, for a stage that lives in the user's own code (it must be
  importable: on ``PYTHONPATH`` or installed; ``stage_import`` words the failures).

Every failure is a ``StageTypeError`` whose message tells the user what to do next.
"""

from __future__ import annotations

import difflib
import importlib
import re
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any, NamedTuple, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from voicebridge.runtime.stage import Stage
from voicebridge.runtime.stage_import import (
    is_not_found,
    missing_attribute_message,
    not_a_stage_message,
    not_found_message,
    raised_message,
)

ENTRY_POINT_GROUP = "voicebridge.stages"

# name -> "module:Class": adding a built-in is one line here (and one in BUILTIN_EXTRAS).
BUILTIN_STAGES: dict[str, str] = {
    "decode": "voicebridge.stages.decode:Decode",
    "vad": "voicebridge.stages.vad:Vad",
    "encode": "voicebridge.stages.encode:Encode",
    "echo": "voicebridge.stages.echo:Echo",
    "rules": "voicebridge.stages.dialogue.rules:RulesDialogue",
    "whisper": "voicebridge.stages.stt.whisper:Whisper",
    "hibari": "voicebridge.stages.tts.hibari:Hibari",
    "piper": "voicebridge.stages.tts.piper:Piper",
    "llm": "voicebridge.stages.dialogue.llm:Llm",
    "openai_tts": "voicebridge.stages.tts.openai_tts:OpenAITts",
    "openai_realtime": "voicebridge.stages.realtime.openai_realtime:OpenAIRealtime",
    "gemini_live": "voicebridge.stages.realtime.gemini_live:GeminiLive",
    "transcribe": "voicebridge.stages.stt.transcribe:Transcribe",
    "lex": "voicebridge.stages.dialogue.lex:LexDialogue",
    "polly": "voicebridge.stages.tts.polly:Polly",
    "google_stt": "voicebridge.stages.stt.google_stt:GoogleStt",
    "google_tts": "voicebridge.stages.tts.google_tts:GoogleTts",
    "dialogflow": "voicebridge.stages.dialogue.dialogflow:Dialogflow",
}

# name -> the pip extra that installs its optional dependencies; "" for stages that need only core.
BUILTIN_EXTRAS: dict[str, str] = {
    "decode": "",
    "vad": "",
    "encode": "",
    "echo": "",
    "rules": "",
    "whisper": "offline",
    "hibari": "offline",
    "piper": "piper",  # GPL-3.0 (piper-tts links espeak-ng): opt-in, never in the default install
    "llm": "openai",
    "openai_tts": "openai",
    "openai_realtime": "openai",
    "gemini_live": "gemini",
    "transcribe": "aws",
    "lex": "aws",
    "polly": "aws",
    "google_stt": "google",
    "google_tts": "google",
    "dialogflow": "google",
}


class StageTypeError(ValueError):
    """A stage ``type`` that cannot be resolved to a Stage class."""


class StageImportError(StageTypeError, ImportError):
    """A stage's module (or one of its dependencies) failed to import."""


class MissingExtraError(StageImportError):
    """A built-in stage needs an optional dependency that is not installed; ``extra`` names
    the pip extra that installs it."""

    def __init__(self, message: str, extra: str) -> None:
        super().__init__(message)
        self.extra = extra


def _entry_points() -> dict[str, metadata.EntryPoint]:
    """Installed entry points of the stage group by name (the first one wins on a clash)."""
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)
    return found


def _check_stage_class(obj: Any, type_name: str, origin: str) -> type[Stage]:
    if not (isinstance(obj, type) and issubclass(obj, Stage)):
        raise StageTypeError(f"stage type {type_name!r}: {not_a_stage_message(obj, origin)}")
    return obj


def _import_module(module_name: str, type_name: str, *, ours: bool) -> ModuleType:
    """Import a stage's module; a user's module (not ``ours``) fails with how to fix it."""
    try:
        return importlib.import_module(module_name)
    except Exception as exc:  # a module's top level may raise anything; report it, don't crash
        if ours:
            message = f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
        elif is_not_found(module_name, exc):
            message = not_found_message(module_name, exc)
        else:
            message = raised_message(module_name, exc)
        raise StageImportError(f"stage type {type_name!r}: {message}") from exc


def _load_target(target: str, type_name: str, *, ours: bool = False) -> type[Stage]:
    """Import ``module:Attr.Path`` and check it is a Stage class."""
    module_name, _, attr_path = target.partition(":")
    if not module_name or not attr_path:
        raise StageTypeError(
            f"stage type {type_name!r}: expected 'package.module:Class', got {target!r}"
        )
    module = _import_module(module_name, type_name, ours=ours)
    obj: Any = module
    for attr in attr_path.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            message = missing_attribute_message(module, attr_path, Stage)
            raise StageTypeError(f"stage type {type_name!r}: {message}") from None
    return _check_stage_class(obj, type_name, target)


def _load_builtin(name: str) -> type[Stage]:
    target = BUILTIN_STAGES[name]
    try:
        return _load_target(target, name, ours=True)
    except StageImportError as exc:
        extra = BUILTIN_EXTRAS.get(name, "")
        cause = exc.__cause__
        missing = getattr(cause, "name", None) or ""
        ours = missing == "voicebridge" or missing.startswith("voicebridge.")
        if extra and isinstance(cause, ImportError) and not ours:
            raise MissingExtraError(
                f"stage type {name!r} needs optional dependencies that are not installed "
                f"({cause}); "
                f"install them with: pip install 'voicebridge[{extra}]'",
                extra,
            ) from cause
        raise


def _load_entry_point(ep: metadata.EntryPoint) -> type[Stage]:
    dist = getattr(ep, "dist", None)
    origin = f"entry point {ep.value!r}" + (f" from {dist.name}" if dist is not None else "")
    try:
        obj = ep.load()
    except ImportError as exc:
        raise StageImportError(f"stage type {ep.name!r}: cannot load {origin}: {exc}") from exc
    except Exception as exc:
        raise StageImportError(
            f"stage type {ep.name!r}: loading {origin} failed: {type(exc).__name__}: {exc}"
        ) from exc
    return _check_stage_class(obj, ep.name, origin)


def _unknown(type_name: str, entry_points: dict[str, metadata.EntryPoint]) -> StageTypeError:
    known = sorted({*BUILTIN_STAGES, *entry_points})
    message = f"unknown stage type {type_name!r}"
    close = difflib.get_close_matches(type_name, known, n=1, cutoff=0.6)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    message += f"; built-in: {', '.join(sorted(BUILTIN_STAGES))}"
    if entry_points:
        message += f"; from entry points: {', '.join(sorted(entry_points))}"
    if "." in type_name:
        message += "; a class in your own code is written 'package.module:Class'"
    else:
        message += "; or give a class as 'package.module:Class'"
    return StageTypeError(message)


def resolve_stage(type_name: str) -> type[Stage]:
    """The Stage class for a pipeline ``type``: a built-in, an entry point or ``module:Class``."""
    if not isinstance(type_name, str) or not type_name.strip():
        raise StageTypeError(f"stage type must be a non-empty string, got {type_name!r}")
    if ":" in type_name:
        return _load_target(type_name, type_name)
    if type_name in BUILTIN_STAGES:
        return _load_builtin(type_name)
    entry_points = _entry_points()
    if type_name in entry_points:
        return _load_entry_point(entry_points[type_name])
    raise _unknown(type_name, entry_points)


def available_stage_types() -> dict[str, str]:
    """Every stage name usable without ``module:Class``, mapped to where it comes from."""
    result: dict[str, str] = {}
    for name in sorted(BUILTIN_STAGES):
        extra = BUILTIN_EXTRAS.get(name, "")
        result[name] = f"builtin (needs voicebridge[{extra}])" if extra else "builtin"
    for name, ep in sorted(_entry_points().items()):
        if name in result:
            continue  # shadowed: built-ins win
        dist = getattr(ep, "dist", None)
        result[name] = f"entry point {ep.value}" + (f" ({dist.name})" if dist is not None else "")
    return result


class ParamInfo(NamedTuple):
    """One parameter of a stage, ready for a CLI table."""

    name: str
    type: str
    default: str
    description: str


@dataclass(frozen=True)
class StageDescription:
    """What ``voicebridge stages`` shows about one stage class."""

    name: str
    role: str
    description: str
    params: list[ParamInfo]
    # The fields of nested models (a rule, a tool, a retry policy) by parameter path:
    # "rules" -> the Rule fields, "resilience.breaker" -> the breaker's.
    nested: dict[str, list[ParamInfo]] = field(default_factory=dict)


def _type_str(annotation: Any) -> str:
    if annotation is None or annotation is type(None):
        return "None"
    if isinstance(annotation, type) and get_origin(annotation) is None and not get_args(annotation):
        return annotation.__name__
    text = str(annotation).replace("NoneType", "None")
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)", r"\1", text)  # drop module paths


def _default_str(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    default = info.default
    if info.default_factory is not None:
        try:
            default = info.default_factory()  # type: ignore[call-arg]
        except Exception:
            return "<computed>"
    if isinstance(default, BaseModel):
        return "{...}"  # its fields are listed beneath it
    return repr(default)


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model inside an annotation such as ``Rule``, ``list[Rule]`` or ``Rule | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def _params(
    model: type[BaseModel],
    nested: dict[str, list[ParamInfo]],
    prefix: str = "",
    seen: frozenset[type[BaseModel]] = frozenset(),
) -> list[ParamInfo]:
    """The model's fields; those of models inside it go into ``nested`` under their path."""
    params: list[ParamInfo] = []
    for name, info in model.model_fields.items():
        shown = info.alias or name
        params.append(
            ParamInfo(
                name=shown,
                type=_type_str(info.annotation),
                default=_default_str(info),
                description=info.description or "",
            )
        )
        inner = _nested_model(info.annotation)
        if inner is not None and inner not in seen | {model}:  # a model inside itself stops
            path = f"{prefix}{shown}"
            nested[path] = _params(inner, nested, f"{path}.", seen | {model})
    return params


def describe_stage(cls: type[Stage]) -> StageDescription:
    """Name, role, description and parameter table of a stage class."""
    nested: dict[str, list[ParamInfo]] = {}
    params = _params(cls.Params, nested)
    doc = cls.description or (cls.__doc__ or "").strip().split("\n", 1)[0]
    return StageDescription(
        name=cls.type_name or cls.__name__,
        role=cls.role,
        description=doc,
        params=params,
        nested=nested,
    )
