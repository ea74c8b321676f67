"""Why a ``package.module:Class`` stage could not be loaded, in words that say what to do.

A user's own stage is imported like any Python module, so it fails the way imports fail: the
module is not on ``sys.path`` (the usual case: ``voicebridge`` run as a command does not look in
the current directory), the module raised while importing, or it has no such class. Each gets
its own message here; ``voicebridge.runtime.registry`` raises them.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

DOCS = "docs/custom-stages.md"
MAX_CAUSE_CHARS = 300  # of an exception's message: a module may raise with a page of text


def is_not_found(module_name: str, exc: BaseException) -> bool:
    """True when ``exc`` says ``module_name`` itself (or a package above it) does not exist,
    rather than that something it imports is missing."""
    missing = getattr(exc, "name", None)
    return (
        isinstance(exc, ModuleNotFoundError)
        and bool(missing)
        and (module_name == missing or module_name.startswith(f"{missing}."))
    )


def _short_path(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the working directory when it is under it (shorter to read)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except (ValueError, OSError):
        return str(path)


def _bounded(text: str) -> str:
    text = " ".join(str(text).split())
    if len(text) > MAX_CAUSE_CHARS:
        text = text[: MAX_CAUSE_CHARS - 1] + "…"
    return text


def _cwd_on_path() -> bool:
    cwd = Path.cwd().resolve()
    for entry in sys.path:
        try:
            if Path(entry or ".").resolve() == cwd:
                return True
        except OSError:
            continue
    return False


def _origin(module_name: str) -> str | None:
    """Where ``module_name`` would be loaded from, without running it; None if unknown."""
    try:
        spec = importlib.util.find_spec(module_name)
    except Exception:  # a parent package that raises, a malformed name
        return None
    if spec is None or not spec.origin or spec.origin in {"built-in", "frozen"}:
        return None
    return _short_path(spec.origin)


def fixes(top: str) -> str:
    """The two ways to make a user's module importable."""
    return (
        f"either run voicebridge with PYTHONPATH=. from the folder that holds {top}.py (or the "
        f"{top}/ package), or make it an installed package (pip install -e .) that registers "
        "the class as an entry point in the 'voicebridge.stages' group, then use that name as "
        f"the type; see {DOCS}"
    )


def not_found_message(module_name: str, exc: BaseException) -> str:
    """The module, or a package above it, is nowhere on ``sys.path``."""
    missing = getattr(exc, "name", None) or module_name
    parent = module_name.rpartition(".")[0]
    if missing == module_name and parent and parent in sys.modules:
        where = getattr(sys.modules[parent], "__file__", None)
        at = f" ({_short_path(Path(where).parent)})" if where else ""
        return (
            f"package {parent!r}{at} has no module {module_name.rpartition('.')[2]!r}; "
            f"check the spelling of the type (see {DOCS})"
        )
    top = missing.partition(".")[0]
    cwd = Path.cwd()
    if _cwd_on_path():
        here = f"Python looked in the current directory ({cwd}) and found no {top}.py or {top}/"
    else:
        # `python -m` puts the current directory on sys.path; the `voicebridge` command does not.
        present = [name for name in (f"{top}.py", f"{top}/") if (cwd / name).exists()]
        here = f"the current directory ({cwd}) is not on Python's import path (sys.path)" + (
            f", although {present[0]} is there" if present else ""
        )
    cause = "" if missing == module_name else f" (no module named {missing!r})"
    return f"cannot find module {module_name!r}{cause}: {here}; {fixes(top)}"


def raised_message(module_name: str, exc: BaseException) -> str:
    """The module was found, but running it raised ``exc``."""
    origin = _origin(module_name)
    found = f"module {module_name!r}" + (f" ({origin})" if origin else "")
    cause = f"{type(exc).__name__}: {_bounded(str(exc))}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    if frames and not isinstance(exc, SyntaxError):  # a SyntaxError names its line itself
        cause += f" (at {_short_path(frames[-1].filename)}:{frames[-1].lineno})"
    if isinstance(exc, ModuleNotFoundError):
        cause += (
            f"; a package it imports is not installed in this Python ({sys.executable}): "
            "install it there"
        )
    return (
        f"{found} was found but raised an error while importing: {cause}. "
        f"Run `python -c 'import {module_name}'` for the whole traceback"
    )


def _stage_classes(module: ModuleType, base: type) -> list[str]:
    return sorted(
        name
        for name, value in vars(module).items()
        if isinstance(value, type) and issubclass(value, base) and value is not base
    )


def missing_attribute_message(module: ModuleType, attr_path: str, base: type) -> str:
    """The module imported fine but has no ``attr_path``; suggest what it does have."""
    name = module.__name__
    message = f"module {name!r} has no attribute {attr_path!r}"
    classes = _stage_classes(module, base)
    close = difflib.get_close_matches(attr_path, classes, n=1, cutoff=0.6)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    where = getattr(module, "__file__", None)
    at = f" ({_short_path(where)})" if where else ""
    if classes:
        message += f"; the Stage classes in it{at}: {', '.join(classes)}"
    else:
        message += f"; it{at} defines no Stage class"
    return message


def not_a_stage_message(obj: Any, origin: str) -> str:
    """``origin`` names something that is not a Stage class."""
    if isinstance(obj, type):
        what = f"the class {obj.__name__}"
        fix = f"derive it from voicebridge.Stage (class {obj.__name__}(Stage): ...)"
    elif callable(obj):
        what = f"the {type(obj).__name__} {getattr(obj, '__name__', repr(obj))}"
        fix = "name a class that derives from voicebridge.Stage"
    else:
        what = f"an instance of {type(obj).__name__}"
        fix = "name the class itself, not an instance of it"
    return f"{origin} is {what}, not a subclass of voicebridge.Stage: {fix}"
