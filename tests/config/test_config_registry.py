"""Stage type resolution: built-ins (lazy), entry points, module:Class, and helpful errors."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field

from voicebridge.runtime import registry
from voicebridge.runtime.registry import (
    BUILTIN_EXTRAS,
    BUILTIN_STAGES,
    ParamInfo,
    StageImportError,
    StageTypeError,
    available_stage_types,
    describe_stage,
    resolve_stage,
)
from voicebridge.runtime.stage import Stage, StageParams

ROOT = Path(__file__).resolve().parents[2]

TOY_SOURCE = """
from voicebridge.runtime.stage import Stage, StageParams

class Toy(Stage):
    type_name = "toy"
    description = "A toy stage."

    class Params(StageParams):
        level: int = 1

class Outer:
    class Inner(Stage):
        type_name = "inner"

class NotAStage:
    pass

def function():
    return None

instance = Toy()
"""


@pytest.fixture
def no_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_entry_points", dict)


# --- built-ins ---------------------------------------------------------------------------------


def test_every_builtin_has_an_extras_entry() -> None:
    assert set(BUILTIN_EXTRAS) == set(BUILTIN_STAGES)
    assert {"decode", "vad", "encode", "echo", "rules"} <= set(BUILTIN_STAGES)
    for target in BUILTIN_STAGES.values():
        module, _, attr = target.partition(":")
        assert module.startswith("voicebridge.stages.") and attr


@pytest.mark.parametrize("name", sorted(BUILTIN_STAGES))
def test_builtin_resolves_when_importable(name: str) -> None:
    module_name, _, attr = BUILTIN_STAGES[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        pytest.skip(f"{module_name} not importable here: {exc}")
    cls = resolve_stage(name)
    assert cls is getattr(module, attr)
    assert issubclass(cls, Stage)


def test_listing_stage_types_imports_no_stage_module() -> None:
    code = (
        "import sys, voicebridge.runtime.registry as r\n"
        "names = r.available_stage_types()\n"
        "assert 'decode' in names, names\n"
        "loaded = [m for m in sys.modules if m.startswith('voicebridge.stages')]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_builtin_with_missing_optional_dependency_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, make_module: Callable[[str], str], no_entry_points: None
) -> None:
    module = make_module("import vb_surely_not_installed_sdk\n")
    monkeypatch.setitem(BUILTIN_STAGES, "toywhisper", f"{module}:Whisper")
    monkeypatch.setitem(BUILTIN_EXTRAS, "toywhisper", "whisper")
    with pytest.raises(StageImportError) as info:
        resolve_stage("toywhisper")
    message = str(info.value)
    assert "pip install 'voicebridge[whisper]'" in message
    assert "vb_surely_not_installed_sdk" in message
    assert isinstance(info.value, ImportError)
    assert isinstance(info.value, ValueError)


def test_core_builtin_import_failure_has_no_pip_hint(
    monkeypatch: pytest.MonkeyPatch, make_module: Callable[[str], str]
) -> None:
    module = make_module("import vb_surely_not_installed_sdk\n")
    monkeypatch.setitem(BUILTIN_STAGES, "toycore", f"{module}:Core")
    monkeypatch.setitem(BUILTIN_EXTRAS, "toycore", "")
    with pytest.raises(StageImportError) as info:
        resolve_stage("toycore")
    assert "pip install" not in str(info.value)
    assert module in str(info.value)


def test_missing_voicebridge_module_is_not_blamed_on_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(BUILTIN_STAGES, "ghost", "voicebridge.stages.vb_ghost_stage:Ghost")
    monkeypatch.setitem(BUILTIN_EXTRAS, "ghost", "ghostly")
    with pytest.raises(StageImportError) as info:
        resolve_stage("ghost")
    assert "pip install" not in str(info.value)
    assert "voicebridge.stages.vb_ghost_stage" in str(info.value)


def test_builtin_is_resolved_from_injected_toy(
    monkeypatch: pytest.MonkeyPatch, make_module: Callable[[str], str]
) -> None:
    module = make_module(TOY_SOURCE)
    monkeypatch.setitem(BUILTIN_STAGES, "toy", f"{module}:Toy")
    monkeypatch.setitem(BUILTIN_EXTRAS, "toy", "")
    assert resolve_stage("toy").__name__ == "Toy"
    assert available_stage_types()["toy"] == "builtin"


# --- module:Class ------------------------------------------------------------------------------


def test_module_class_resolves(make_module: Callable[[str], str]) -> None:
    module = make_module(TOY_SOURCE)
    cls = resolve_stage(f"{module}:Toy")
    assert cls is sys.modules[module].Toy
    assert cls.type_name == "toy"


def test_module_nested_class_resolves(make_module: Callable[[str], str]) -> None:
    module = make_module(TOY_SOURCE)
    assert resolve_stage(f"{module}:Outer.Inner").type_name == "inner"


def test_module_that_cannot_be_imported() -> None:
    with pytest.raises(StageImportError) as info:
        resolve_stage("vb_no_such_package.stages:Thing")
    message = str(info.value)
    assert "'vb_no_such_package.stages'" in message
    assert "no module named 'vb_no_such_package'" in message


def test_module_that_raises_on_import(make_module: Callable[[str], str]) -> None:
    module = make_module("raise RuntimeError('boom at import')\n")
    with pytest.raises(StageImportError, match="RuntimeError: boom at import"):
        resolve_stage(f"{module}:Anything")


def test_missing_attribute(make_module: Callable[[str], str]) -> None:
    module = make_module(TOY_SOURCE)
    with pytest.raises(StageTypeError, match=f"module '{module}' has no attribute 'Tyo'"):
        resolve_stage(f"{module}:Tyo")


@pytest.mark.parametrize("attr", ["NotAStage", "function", "instance"])
def test_not_a_stage_subclass(make_module: Callable[[str], str], attr: str) -> None:
    module = make_module(TOY_SOURCE)
    with pytest.raises(StageTypeError, match=r"not a subclass of voicebridge\.Stage"):
        resolve_stage(f"{module}:{attr}")


@pytest.mark.parametrize("bad", [":Toy", "module:", ""])
def test_malformed_types(bad: str) -> None:
    with pytest.raises(StageTypeError):
        resolve_stage(bad)


# --- unknown names -----------------------------------------------------------------------------


def test_unknown_name_suggests_and_lists(no_entry_points: None) -> None:
    with pytest.raises(StageTypeError) as info:
        resolve_stage("vda")
    message = str(info.value)
    assert "unknown stage type 'vda'" in message
    assert "did you mean 'vad'?" in message
    for name in BUILTIN_STAGES:
        assert name in message
    assert "package.module:Class" in message


def test_unknown_name_without_close_match(no_entry_points: None) -> None:
    with pytest.raises(StageTypeError) as info:
        resolve_stage("zzzzzz")
    assert "did you mean" not in str(info.value)


def test_dotted_name_hints_at_colon_form(no_entry_points: None) -> None:
    with pytest.raises(StageTypeError, match=r"written 'package\.module:Class'"):
        resolve_stage("mypkg.stages.Shout")


# --- entry points ------------------------------------------------------------------------------


def _fake_dist(root: Path, dist: str, entries: dict[str, str]) -> None:
    """A minimal installed distribution on sys.path, as pip would leave it."""
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = {value}" for name, value in entries.items())
    (info / "entry_points.txt").write_text(f"[voicebridge.stages]\n{lines}\n")


def test_entry_point_from_installed_distribution(
    tmp_path: Path, make_module: Callable[[str], str]
) -> None:
    module = make_module(TOY_SOURCE)
    _fake_dist(
        tmp_path,
        "vb_fake_plugin",
        {
            "shouty": f"{module}:Toy",
            "notstage": f"{module}:NotAStage",
            "broken": "vb_no_such_plugin_module:Thing",
            "echo": f"{module}:Toy",  # a plugin cannot shadow a built-in
        },
    )
    importlib.invalidate_caches()

    assert resolve_stage("shouty") is sys.modules[module].Toy
    types = available_stage_types()
    assert types["shouty"] == f"entry point {module}:Toy (vb_fake_plugin)"
    assert types["echo"] == "builtin"

    with pytest.raises(StageTypeError, match="not a subclass"):
        resolve_stage("notstage")
    with pytest.raises(StageImportError, match="vb_no_such_plugin_module"):
        resolve_stage("broken")
    with pytest.raises(StageTypeError) as info:
        resolve_stage("shuoty")
    assert "did you mean 'shouty'?" in str(info.value)
    listed = str(info.value).split("from entry points: ")[1].split(";")[0].split(", ")
    assert {"broken", "echo", "notstage", "shouty"} <= set(listed)  # other plugins may be installed


def test_entry_point_via_patched_entry_points(
    monkeypatch: pytest.MonkeyPatch, make_module: Callable[[str], str]
) -> None:
    module = make_module(TOY_SOURCE)
    seen_groups: list[str] = []

    def fake_entry_points(*, group: str) -> list[metadata.EntryPoint]:
        seen_groups.append(group)
        return [metadata.EntryPoint(name="toy_ep", value=f"{module}:Toy", group=group)]

    monkeypatch.setattr(registry.metadata, "entry_points", fake_entry_points)
    assert resolve_stage("toy_ep").__name__ == "Toy"
    assert seen_groups == ["voicebridge.stages"]
    assert available_stage_types()["toy_ep"].startswith("entry point")


# --- describe_stage ----------------------------------------------------------------------------


class Described(Stage):
    """First docstring line.

    More text.
    """

    type_name = "described"
    role = "stt"

    class Params(StageParams):
        model: str = Field(description="model name")
        beam_size: int = Field(default=5, description="search width")
        language: str | None = None
        mode: Literal["fast", "exact"] = "fast"
        words: list[str] = Field(default_factory=lambda: ["a"])


def test_describe_stage() -> None:
    info = describe_stage(Described)
    assert info.name == "described"
    assert info.role == "stt"
    assert info.description == "First docstring line."
    assert info.params == [
        ParamInfo("model", "str", "required", "model name"),
        ParamInfo("beam_size", "int", "5", "search width"),
        ParamInfo("language", "str | None", "None", ""),
        ParamInfo("mode", "Literal['fast', 'exact']", "'fast'", ""),
        ParamInfo("words", "list[str]", "['a']", ""),
    ]
    name, type_str, default, description = info.params[1]
    assert (name, type_str, default, description) == ("beam_size", "int", "5", "search width")


def test_describe_stage_prefers_description_attribute(make_module: Callable[[str], str]) -> None:
    module = make_module(TOY_SOURCE)
    info = describe_stage(resolve_stage(f"{module}:Toy"))
    assert info.description == "A toy stage."
    assert info.role == "processor"
    assert info.params == [ParamInfo("level", "int", "1", "")]
