"""YAML loading: plain data, key positions, env substitution and error reporting."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicebridge.config.errors import ConfigError, ConfigIssue, format_path
from voicebridge.config.yaml_source import (
    EnvSubstitutionError,
    load_yaml_file,
    load_yaml_text,
    substitute_env,
)

TEXT = """\
name: demo
stages:
  - type: decode
  - type: vad
    params:
      aggressiveness: 2
      # a comment
      beam_size: five
flags: {a: true, b: 1.5}
"""


def test_plain_data_and_types() -> None:
    doc = load_yaml_text(TEXT)
    assert doc.data == {
        "name": "demo",
        "stages": [
            {"type": "decode"},
            {"type": "vad", "params": {"aggressiveness": 2, "beam_size": "five"}},
        ],
        "flags": {"a": True, "b": 1.5},
    }
    stages = doc.data["stages"]
    assert type(doc.data) is dict and type(stages) is list
    assert type(doc.data["flags"]["a"]) is bool
    assert type(doc.data["flags"]["b"]) is float
    assert type(stages[1]["params"]["aggressiveness"]) is int
    assert type(doc.data["name"]) is str


def test_positions_of_keys_and_items() -> None:
    doc = load_yaml_text(TEXT)
    assert doc.locate(("name",)) == (1, 1)
    assert doc.locate(("stages",)) == (2, 1)
    assert doc.locate(("stages", 0)) == (3, 5)
    assert doc.locate(("stages", 1)) == (4, 5)
    assert doc.locate(("stages", 1, "params")) == (5, 5)
    assert doc.locate(("stages", 1, "params", "beam_size")) == (8, 7)
    assert doc.locate(("flags", "b")) == (9, 18)


def test_position_falls_back_to_nearest_parent() -> None:
    doc = load_yaml_text(TEXT)
    assert doc.line_of(("stages", 1, "params", "missing_key")) == 5
    assert doc.line_of(("stages", 7, "type")) == 2
    assert doc.line_of(("nowhere",)) == 1


def test_issue_uses_path_and_position() -> None:
    doc = load_yaml_text(TEXT, "pipelines/x.yaml")
    issue = doc.issue(("stages", 1, "params", "beam_size"), "bad")
    assert str(issue) == "pipelines/x.yaml:8:7: stages[1].params.beam_size: bad"


def test_merge_keys_and_anchors() -> None:
    doc = load_yaml_text("base: &b {x: 1}\nchild:\n  <<: *b\n  y: 2\n")
    assert doc.data["child"] == {"x": 1, "y": 2}
    # merged keys have no position of their own: the child mapping's line is used
    assert doc.line_of(("child", "x")) == 2
    assert doc.line_of(("child", "y")) == 4


def test_empty_document_is_none() -> None:
    doc = load_yaml_text("# nothing here\n")
    assert doc.data is None
    assert doc.locate(()) == (None, None)


# --- environment substitution ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("${A}", "alpha"),
        ("x-${A}-y", "x-alpha-y"),
        ("${A}${B}", "alphabeta"),
        ("${MISSING:-fallback}", "fallback"),
        ("${MISSING:-}", ""),
        ("${EMPTY:-used}", "used"),  # like a shell, ':-' also covers set-but-empty
        ("${A:-unused}", "alpha"),
        ("${MISSING:-a b:c}", "a b:c"),
        ("$${A}", "${A}"),
        ("cost: $5 and $${literal}", "cost: $5 and ${literal}"),
        ("$$${A}", "$${A}"),
        ("${PORT}", "8080"),
    ],
)
def test_substitute_env(text: str, expected: str) -> None:
    env = {"A": "alpha", "B": "beta", "EMPTY": "", "PORT": "8080"}
    assert substitute_env(text, env) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("${MISSING}", "MISSING is not set"),
        ("${A", "unterminated"),
        ("${1A}", "invalid environment variable name"),
        ("${}", "invalid environment variable name"),
        ("${A:-${B}}", "nested"),
    ],
)
def test_substitute_env_errors(text: str, fragment: str) -> None:
    with pytest.raises(EnvSubstitutionError, match=fragment):
        substitute_env(text, {"A": "alpha"})


def test_env_substitution_in_document_keeps_strings() -> None:
    text = "port: ${PORT}\nflag: ${FLAG:-true}\nlist: [a, '${A}']\nkey_${A}: 1\n"
    doc = load_yaml_text(text, environ={"PORT": "9000", "A": "x"})
    # numbers and booleans from the environment stay strings; pydantic coerces them later
    assert doc.data == {"port": "9000", "flag": "true", "list": ["a", "x"], "key_${A}": 1}
    assert doc.issues == []


def test_missing_env_var_is_an_issue_at_its_path() -> None:
    text = "a: 1\nstages:\n  - type: stt\n    key: ${NOPE}\n  - other: ${ALSO_NOPE}\n"
    doc = load_yaml_text(text, "f.yaml", environ={})
    assert [(i.line, i.path) for i in doc.issues] == [(4, "stages[0].key"), (5, "stages[1].other")]
    assert "NOPE is not set" in doc.issues[0].message
    assert doc.data["stages"][0]["key"] == "${NOPE}"
    with pytest.raises(ConfigError) as info:
        doc.raise_for_issues()
    assert len(info.value.issues) == 2


def test_environ_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VB_TEST_YAML_VALUE", "from-os")
    assert load_yaml_text("v: ${VB_TEST_YAML_VALUE}").data == {"v": "from-os"}


# --- errors ----------------------------------------------------------------------------------


def _only_issue(exc: pytest.ExceptionInfo[ConfigError]) -> ConfigIssue:
    assert len(exc.value.issues) == 1
    return exc.value.issues[0]


def test_syntax_error_has_line_and_column() -> None:
    with pytest.raises(ConfigError) as info:
        load_yaml_text("name: x\nstages: [a, b\nother: 1\n", "bad.yaml")
    issue = _only_issue(info)
    assert issue.file == "bad.yaml"
    assert issue.line == 3
    assert issue.column is not None
    assert issue.message == "a '[' list is never closed with ']' (opened at line 2)"
    assert str(issue).startswith("bad.yaml:3:")


def test_bad_indentation_is_reported_with_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_yaml_text("a:\n  b: 1\n c: 2\n")
    assert _only_issue(info).line == 3


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (
            "stages:\n  - type: decode\n   - type: vad\n",
            "3:4",
            "bad indentation: this line is indented differently from the lines of the block it"
            " belongs to (the block starting at line 2); align it with its siblings",
        ),
        (
            "name: x\n  description: y\n",
            "2:14",
            "unexpected ':': the line is indented too far, or a value containing ': ' needs quotes",
        ),
        ("stages:\n\t- type: decode\n", "2:1", "a tab character: YAML indents with spaces only"),
        (
            "name: x\nstages\n  - type: decode\n",
            "3:9",
            "expected 'key: value': a ':' is missing after the key at line 2, or the"
            " indentation is off",
        ),
        ('name: "x\nstages: []\n', "3:1", "a quoted string is never closed (opened at line 1)"),
        ("a: {b: 1\n", "2:1", "a '{' mapping is never closed with '}' (opened at line 1)"),
    ],
)
def test_syntax_errors_are_said_in_plain_words(text: str, where: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_yaml_text(text, "p.yaml")
    assert str(info.value) == f"p.yaml:{where}: {message}"


def test_tab_indentation_is_reported() -> None:
    with pytest.raises(ConfigError) as info:
        load_yaml_text("a:\n\tb: 1\n")
    assert _only_issue(info).line == 2


def test_duplicate_key_is_an_error_with_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_yaml_text("name: a\nstages: []\nname: b\n", "dup.yaml")
    issue = _only_issue(info)
    assert issue.line == 3
    assert "duplicate key" in issue.message
    assert '"name"' in issue.message


def test_nested_duplicate_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_yaml_text("stages:\n  - type: vad\n    params: {a: 1, a: 2}\n")
    assert _only_issue(info).line == 3


def test_multiple_documents_are_rejected() -> None:
    with pytest.raises(ConfigError) as info:
        load_yaml_text("a: 1\n---\nb: 2\n")
    assert _only_issue(info).line == 2


def test_unknown_tag_is_an_issue() -> None:
    doc = load_yaml_text("a: !secret xyz\n")
    assert doc.issues[0].path == "a"
    assert "unsupported YAML tag" in doc.issues[0].message


def test_recursive_alias_is_rejected() -> None:
    with pytest.raises(ConfigError, match="recursive alias"):
        load_yaml_text("&x [1, *x]\n")


def test_alias_bomb_is_rejected() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 7):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{refs}]")
    with pytest.raises(ConfigError, match="more than"):
        load_yaml_text("\n".join(lines) + "\n")


def test_text_over_size_limit() -> None:
    with pytest.raises(ConfigError, match="larger than the limit of 100 bytes"):
        load_yaml_text("a: " + "x" * 200, max_bytes=100)


def test_file_over_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("a: " + "x" * 2000)
    with pytest.raises(ConfigError) as info:
        load_yaml_file(path, max_bytes=1000)
    issue = _only_issue(info)
    assert issue.file == str(path)
    assert "2003 bytes" in issue.message


def test_default_size_limit_is_one_mib(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * (1 << 20))
    with pytest.raises(ConfigError, match="1048576"):
        load_yaml_file(path)


def test_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_yaml_file(tmp_path / "nope.yaml")
    assert _only_issue(info).message == "file not found"


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="a directory, not a YAML file"):
        load_yaml_file(tmp_path)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_yaml_file(path)
    issue = _only_issue(info)
    assert issue.line == 2
    assert "UTF-8" in issue.message


def test_file_with_bom_and_positions(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfa: 1\nb: 2\n")
    doc = load_yaml_file(path)
    assert doc.data == {"a": 1, "b": 2}
    assert doc.line_of(("b",)) == 2
    assert doc.source == str(path)


# --- ConfigIssue / ConfigError formatting ------------------------------------------------------


def test_format_path() -> None:
    assert format_path(("stages", 2, "params", "beam_size")) == "stages[2].params.beam_size"
    assert format_path(()) == ""
    assert format_path((0, "a")) == "[0].a"


def test_issue_str_variants() -> None:
    issue = ConfigIssue(
        "pipelines/x.yaml",
        12,
        5,
        "stages[2].params.beam_size",
        "Input should be a valid integer (got 'five')",
    )
    assert str(issue) == (
        "pipelines/x.yaml:12:5: stages[2].params.beam_size: "
        "Input should be a valid integer (got 'five')"
    )
    assert str(ConfigIssue("f.yaml", 3, None, "", "m")) == "f.yaml:3: m"
    assert str(ConfigIssue("f.yaml", None, None, "", "file not found")) == "f.yaml: file not found"


def test_config_error_lists_all_issues_sorted_by_line() -> None:
    error = ConfigError(
        [
            ConfigIssue("f.yaml", 9, 1, "b", "second"),
            ConfigIssue("f.yaml", 2, 3, "a", "first"),
            ConfigIssue("f.yaml", 9, 0, "c", "between"),
        ]
    )
    assert str(error).splitlines() == [
        "f.yaml:2:3: a: first",
        "f.yaml:9:0: c: between",
        "f.yaml:9:1: b: second",
    ]
    assert [i.message for i in error.issues] == ["first", "between", "second"]
