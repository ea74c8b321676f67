"""A ``module:Class`` stage that cannot be loaded fails with one message per cause, each saying
what to do: the module is not importable, it raised while importing, it has no such class, or
what it names is not a Stage."""

from __future__ import annotations

import importlib
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from voicebridge.runtime.registry import StageImportError, StageTypeError, resolve_stage
from voicebridge.runtime.stage_import import MAX_CAUSE_CHARS

ROOT = Path(__file__).resolve().parents[2]

Make = Callable[[str], str]


@pytest.fixture
def make_module(make_module: Make, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Make:
    """The config tests' module writer, with its folder also the working directory."""
    monkeypatch.chdir(tmp_path)
    return make_module


def message_of(type_name: str, kind: type[Exception] = StageImportError) -> str:
    with pytest.raises(kind) as info:
        resolve_stage(type_name)
    return str(info.value)


# --- the module is not found -----------------------------------------------------------------


def test_not_found_from_the_command_line_names_both_fixes(tmp_path: Path) -> None:
    """The usual first failure: the stage sits in the current directory, which the installed
    ``voicebridge`` command does not import from."""
    (tmp_path / "my_stages.py").write_text(
        "from voicebridge import Stage\nclass Shout(Stage): ...\n"
    )
    (tmp_path / "p.yaml").write_text("stages:\n  - type: decode\n  - type: my_stages:Shout\n")
    command = [sys.executable, "-P", "-m", "voicebridge.cli", "validate", "p.yaml"]
    env = {"PYTHONPATH": str(ROOT), "PATH": ""}
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    err = done.stderr
    assert err.startswith("p.yaml:3:5: stages[1].type: stage type 'my_stages:Shout': ")
    assert "cannot find module 'my_stages'" in err
    assert f"the current directory ({tmp_path}) is not on Python's import path" in err
    assert "although my_stages.py is there" in err
    assert "PYTHONPATH=." in err and "pip install -e ." in err
    assert "'voicebridge.stages' group" in err and "docs/custom-stages.md" in err
    assert err.count("\n") == 1  # one message, not a traceback


def test_not_found_when_the_current_directory_is_searched(make_module: Make) -> None:
    message = message_of("vb_surely_absent_module:Thing")
    assert "cannot find module 'vb_surely_absent_module':" in message
    assert "Python looked in the current directory" in message
    assert "no vb_surely_absent_module.py or vb_surely_absent_module/" in message
    assert "PYTHONPATH=." in message


def test_not_found_names_the_missing_package_above_the_module() -> None:
    message = message_of("vb_no_such_package.stages:Thing")
    expected = (
        "cannot find module 'vb_no_such_package.stages' (no module named 'vb_no_such_package')"
    )
    assert expected in message
    assert "vb_no_such_package.py" in message


def test_a_package_without_that_module_is_a_spelling_problem(make_module: Make) -> None:
    package = f"vb_pkg_{uuid.uuid4().hex[:12]}"
    (Path.cwd() / package).mkdir()
    (Path.cwd() / package / "__init__.py").write_text("")
    importlib.invalidate_caches()
    try:
        message = message_of(f"{package}.stagse:Thing")
    finally:
        sys.modules.pop(package, None)
    assert f"package '{package}' ({package}) has no module 'stagse'" in message
    assert "PYTHONPATH" not in message  # the package was found: the path is not the problem


# --- the module raised while importing ------------------------------------------------------


def test_a_missing_dependency_is_not_mistaken_for_a_missing_module(make_module: Make) -> None:
    module = make_module("import vb_dependency_not_installed\n")
    message = message_of(f"{module}:Thing")
    assert f"module '{module}' ({module}.py) was found but raised an error while importing" in (
        message
    )
    assert "ModuleNotFoundError: No module named 'vb_dependency_not_installed'" in message
    assert f"(at {module}.py:1)" in message
    assert f"not installed in this Python ({sys.executable})" in message
    assert "PYTHONPATH" not in message


def test_an_exception_at_import_shows_its_type_message_and_line(make_module: Make) -> None:
    module = make_module("x = 1\nraise RuntimeError('boom at import')\n")
    message = message_of(f"{module}:Thing")
    assert "RuntimeError: boom at import" in message
    assert f"(at {module}.py:2)" in message
    assert f"Run `python -c 'import {module}'` for the whole traceback" in message


def test_a_long_exception_message_is_bounded(make_module: Make) -> None:
    module = make_module("raise ValueError('x' * 5000 + '\\n' + 'y' * 5000)\n")
    message = message_of(f"{module}:Thing")
    assert "x" * MAX_CAUSE_CHARS not in message and "…" in message
    assert len(message) < 2 * MAX_CAUSE_CHARS + 300
    assert "\n" not in message


def test_a_syntax_error_names_its_line(make_module: Make) -> None:
    module = make_module("def broken(:\n    pass\n")
    message = message_of(f"{module}:Thing")
    assert "SyntaxError: " in message and "line 1" in message


# --- the module imports, but what the type names is wrong -----------------------------------

STAGES = """
from voicebridge import Stage

class Shout(Stage): ...
class Whisperer(Stage): ...
class Plain: ...
def helper() -> None: ...
instance = Shout()
"""


def test_no_such_class_suggests_and_lists_the_stage_classes(make_module: Make) -> None:
    module = make_module(STAGES)
    message = message_of(f"{module}:Shuot", StageTypeError)
    assert f"module '{module}' has no attribute 'Shuot' (did you mean 'Shout'?)" in message
    assert f"the Stage classes in it ({module}.py): Shout, Whisperer" in message


def test_no_such_class_in_a_module_without_stages(make_module: Make) -> None:
    module = make_module("VALUE = 1\n")
    message = message_of(f"{module}:Thing", StageTypeError)
    assert "defines no Stage class" in message


@pytest.mark.parametrize(
    ("attr", "says"),
    [
        ("Plain", "is the class Plain, not a subclass of voicebridge.Stage: derive it from"),
        ("helper", "is the function helper, not a subclass of voicebridge.Stage"),
        ("instance", "is an instance of Shout, not a subclass of voicebridge.Stage: name the"),
    ],
)
def test_not_a_stage_class(make_module: Make, attr: str, says: str) -> None:
    module = make_module(STAGES)
    with pytest.raises(StageTypeError) as info:
        resolve_stage(f"{module}:{attr}")
    assert f"{module}:{attr} {says}" in str(info.value)
    assert not isinstance(info.value, ImportError)  # the module imported fine
