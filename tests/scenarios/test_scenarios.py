"""`voicebridge test`: every kind of expectation passing and failing on real simulated calls
(a scripted pipeline on the virtual clock: no model), bad scenario files, JUnit parsed back."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from voicebridge.cli import main
from voicebridge.config.errors import ConfigError
from voicebridge.scenarios.checks import dead_air
from voicebridge.scenarios.run import run_blocking
from voicebridge.scenarios.spec import load_scenario
from voicebridge.scenarios.suite import load_all, run_all, run_one
from voicebridge.testing.scenarios import voicebridge_scenario  # noqa: F401  (the fixture)

PIPELINE = """
name: scripted
stages:
  - type: decode
  - type: vad
    params: {{min_speech_ms: 60, min_silence_ms: 300, pre_roll_ms: 100, forward_audio: false}}
  - type: voicebridge.testing:ScriptedStt
    params: {{lines: {lines}}}
  - type: voicebridge.testing:ScriptedDialogue
    params: {{greeting: "Hello there.", reply: "Fine, thanks.", think_s: {think}}}
  - type: voicebridge.testing:ToneSpeaker
    params: {{ms_per_char: 30}}
  - type: encode
"""


def write(tmp_path: Path, body: str, *, lines: str = "[hi, goodbye]", think: float = 0.0) -> Path:
    (tmp_path / "pipeline.yaml").write_text(PIPELINE.format(lines=lines, think=think))
    path = tmp_path / "case.yaml"
    path.write_text("pipeline: pipeline.yaml\ngap_ms: 300\n" + body)
    return path


TWO_TURNS = """
turns:
  - sound_ms: 500
    expect: {turn1}
  - sound_ms: 500
    expect: {turn2}
expect: {call}
"""


def failures(
    tmp_path: Path, turn1: str = "{}", turn2: str = "{}", call: str = "{}", **kw: object
) -> list[str]:
    path = write(tmp_path, TWO_TURNS.format(turn1=turn1, turn2=turn2, call=call), **kw)  # type: ignore[arg-type]
    return list(run_one(load_scenario(path)).failures)


def test_a_call_that_meets_every_kind_of_expectation_passes(tmp_path: Path) -> None:
    assert (
        failures(
            tmp_path,
            turn1="{reply_contains: fine, reply_matches: '^Fine, thanks\\.$', "
            "reply_within_ms: 1500, interrupted: false}",
            turn2="{reply_contains: goodbye}",
            call="{heard: ['Hello there.', 'Fine, thanks.', 'Goodbye.'], actions: [hangup], "
            "ended_by: agent, max_dead_air_s: 2, max_latency_ms: 1500}",
        )
        == []
    )


def test_each_broken_expectation_is_one_line(tmp_path: Path) -> None:
    found = failures(
        tmp_path,
        turn1="{reply_contains: weather, reply_matches: 'sorry', interrupted: true}",
        turn2="{reply_contains: goodbye}",
        call="{heard: ['Hello there.'], actions: [transfer], ended_by: caller}",
    )
    assert found == [
        "turn 1: reply does not contain 'weather'; heard 'Fine, thanks.'",
        "turn 1: reply does not match /sorry/; heard 'Fine, thanks.'",
        "turn 1: reply was not interrupted",
        "heard history differs: wanted ['Hello there.'], heard "
        "['Hello there.', 'Fine, thanks.', 'Goodbye.']",
        "actions differ: wanted ['transfer'], got ['hangup']",
        "call ended by agent, wanted caller",
    ]


def test_a_slow_reply_fails_latency_and_dead_air(tmp_path: Path) -> None:
    """The dialogue thinks 3 s of virtual time: the caller sits through the silence until the
    pipeline's filler ("One moment.") starts at 1.5 s."""
    found = failures(
        tmp_path,
        turn1="{reply_within_ms: 1000}",
        call="{max_dead_air_s: 1.2, max_latency_ms: 1000}",
        think=3.0,
    )
    assert found[0].startswith("turn 1: reply started ") and found[0].endswith("(limit 1000 ms)")
    assert found[1].startswith("dead air of 1.") and found[1].endswith("(limit 1.2 s)")
    assert found[2].startswith("turn 1: latency ") and found[2].endswith("(limit 1000 ms)")
    assert all(f.startswith("turn 2: latency ") for f in found[3:]), found


def test_a_transfer_is_an_action(tmp_path: Path) -> None:
    found = failures(
        tmp_path,
        turn2="{reply_contains: transferring}",
        call="{actions: [transfer]}",
        lines="[hi, transfer me]",
    )
    assert found == []


def test_the_shipped_example_scenarios_load_and_echo_passes() -> None:
    examples = Path(__file__).resolve().parents[2] / "examples/scenarios"
    scenarios = load_all([examples, examples / "regression"])
    assert {s.name for s in scenarios} >= {
        "echo-plays-back",
        "receptionist-hours",
        "receptionist-transfer",
        "receptionist-order-keypad",
        "regression-hours",
    }
    echo = next(s for s in scenarios if s.name == "echo-plays-back")
    assert run_one(echo).failures == ()


def test_a_turn_never_reached_and_a_reply_never_heard_fail(tmp_path: Path) -> None:
    """The agent hangs up on the first line: the second turn is never spoken."""
    found = failures(
        tmp_path, turn2="{reply_within_ms: 500}", call="{ended_by: agent}", lines="[goodbye]"
    )
    assert found == ["turn 2: the call ended before this turn was spoken"]


def test_an_interruption_is_seen(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "interrupt_after_ms: 300\nturns:\n  - sound_ms: 500\n    expect: {interrupted: true}\n"
        "  - sound_ms: 500\n",
        lines="[hi, there]",
    )
    (tmp_path / "pipeline.yaml").write_text(
        (tmp_path / "pipeline.yaml")
        .read_text()
        .replace("Fine, thanks.", "one two three four five six seven eight nine ten eleven.")
    )
    assert run_one(load_scenario(path)).failures == ()


def test_dead_air_is_the_longest_silence_between_sounds() -> None:
    assert dead_air([(0, 1), (0.5, 2), (3.5, 4), (4.2, 5)]) == pytest.approx(1.5)
    assert dead_air([]) == 0.0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("turns: []\n", "case.yaml:1:1: a scenario needs turns, a persona, or both"),
        (
            "turns:\n  - sound_ms: 100\n    expect: {reply_contain: x}\n",
            "case.yaml:5:14: turns[0].expect.reply_contain: unknown key 'reply_contain'",
        ),
        (
            "turns:\n  - say: hi\n    sound_ms: 100\n",
            "case.yaml:4:5: turns[0]: a turn needs exactly one of say, wav, dtmf, sound_ms",
        ),
        (
            "turns:\n  - sound_ms: 100\n    expect: {reply_matches: '('}\n",
            "case.yaml:5:14: turns[0].expect.reply_matches: not a valid regular expression",
        ),
        ("turns:\n  - wav: missing.wav\n", "case.yaml:4:5: turns[0].wav: WAV file not found"),
        ("codec: mulaw\nturns:\n  - sound_ms: 100\n", "codec mulaw streams at 8000 Hz only"),
        (
            "turns:\n  - sound_ms: 100\nexpect: {ended_by: nobody}\n",
            "expect.ended_by: Input should be",
        ),
    ],
)
def test_bad_scenario_files_name_the_line(tmp_path: Path, body: str, message: str) -> None:
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    text = str(caught.value)
    assert message in text, text


def test_a_missing_pipeline_is_named(tmp_path: Path) -> None:
    path = tmp_path / "case.yaml"
    path.write_text("pipeline: nowhere.yaml\nturns:\n  - sound_ms: 100\n")
    with pytest.raises(ConfigError, match=r"case.yaml:1:1: pipeline: pipeline file not found"):
        load_scenario(path)


def test_the_command_prints_a_summary_writes_junit_and_call_pages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path, "turns:\n  - sound_ms: 500\n    expect: {reply_contains: fine}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        good.read_text()
        .replace("fine}", "weather}")
        .replace("pipeline:", "name: the bad one\npipeline:")
    )
    junit = tmp_path / "out.xml"
    html = tmp_path / "pages"
    code = main(
        ["test", str(good), str(bad), "--junit", str(junit), "--html", str(html), "--jobs", "2"]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert f"{good}::case PASSED" in out and f"{bad}::the bad one FAILED" in out
    assert "turn 1: reply does not contain 'weather'" in out
    assert "1 failed, 1 passed in" in out
    root = ET.parse(junit).getroot()
    suite = root.find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures")) == ("2", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {"case", "the bad one"}
    assert cases["case"].find("failure") is None
    failure = cases["the bad one"].find("failure")
    assert failure is not None and "weather" in (failure.get("message") or "")
    assert [p.name for p in html.iterdir()] == ["the_bad_one.html"]
    assert "<html" in (html / "the_bad_one.html").read_text()

    assert main(["test", str(good), "-k", "CASE"]) == 0
    assert "1 passed" in capsys.readouterr().out


def test_the_command_refuses_bad_files_before_any_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "turns: nope\n")
    assert main(["test", str(path)]) == 3
    assert "case.yaml:3:1: turns: Input should be a valid list" in capsys.readouterr().err
    assert main(["test", str(tmp_path / "none.yaml")]) == 4
    good = write(tmp_path, "turns:\n  - sound_ms: 300\n")
    assert main(["test", str(good), "-k", "zzz"]) == 2


def test_a_folder_runs_every_scenario_in_it(tmp_path: Path) -> None:
    write(tmp_path, "turns:\n  - sound_ms: 300\n")
    (tmp_path / "pipeline.yaml").rename(tmp_path / "p.yml.txt")  # the folder holds scenarios only
    (tmp_path / "case.yaml").write_text(
        (tmp_path / "case.yaml").read_text().replace("pipeline.yaml", "p.yml.txt")
    )
    outcomes = run_all(load_all([tmp_path]))
    assert [o.scenario.name for o in outcomes] == ["case"] and outcomes[0].passed


def test_the_pytest_fixture_runs_a_scenario(tmp_path: Path, voicebridge_scenario) -> None:  # noqa: F811
    path = write(tmp_path, "turns:\n  - sound_ms: 500\n    expect: {reply_contains: fine}\n")
    assert voicebridge_scenario(path).passed


def test_the_pytest_fixture_fails_with_the_reasons(tmp_path: Path, voicebridge_scenario) -> None:  # noqa: F811
    path = write(tmp_path, "turns:\n  - sound_ms: 500\n    expect: {reply_contains: weather}\n")
    with pytest.raises(pytest.fail.Exception, match="reply does not contain 'weather'"):
        voicebridge_scenario(path)


RULES_PIPELINE = """
name: keypad
stages:
  - type: decode
  - type: vad
    params: {min_speech_ms: 60, min_silence_ms: 300, pre_roll_ms: 100, forward_audio: false}
  - type: voicebridge.testing:ScriptedStt
    params: {lines: [order status]}
  - type: rules
    params:
      greeting: Hello.
      fallback: Sorry?
      rules:
        - keywords: [order]
          reply: Type your order number, then the pound key.
        - dtmf: "\\\\d+#"
          reply: Order {digits_spoken} is on its way.
  - type: voicebridge.testing:ToneSpeaker
    params: {ms_per_char: 20}
  - type: encode
"""


def test_a_dtmf_turn_presses_keys_the_rules_answer(tmp_path: Path) -> None:
    (tmp_path / "keypad.yaml").write_text(RULES_PIPELINE)
    path = tmp_path / "case.yaml"
    path.write_text(
        "pipeline: keypad.yaml\ngap_ms: 300\nturns:\n"
        "  - sound_ms: 500\n    expect: {reply_contains: pound key}\n"
        "  - dtmf: '5512#'\n"
        "    expect: {reply_contains: 'order five five one two', reply_within_ms: 1000}\n"
    )
    outcome = run_one(load_scenario(path))
    assert outcome.failures == ()
    wrong = path.read_text().replace("5512#", "5513#")
    path.write_text(wrong)
    found = run_one(load_scenario(path)).failures
    assert found == (
        "turn 2: reply does not contain 'order five five one two'; "
        "heard 'Order five five one three is on its way.'",
    )


LONG = "one two three four five six seven eight nine ten eleven twelve."


def long_speech(tmp_path: Path, body: str, *, greeting: str = "Hello there.") -> Path:
    """A scenario whose agent answers every line with a long reply (two seconds of tone)."""
    path = write(tmp_path, body, lines="[hi, there, again]")
    pipeline = tmp_path / "pipeline.yaml"
    text = pipeline.read_text().replace("Fine, thanks.", LONG)
    pipeline.write_text(text.replace("Hello there.", greeting))
    return path


def agent_heard(path: Path) -> list[tuple[str, bool]]:
    result = run_blocking(load_scenario(path))
    assert result.failures == []
    assert result.report is not None
    return [
        (str(e["text"]), bool(e.get("interrupted")))
        for e in result.report.history
        if e["role"] == "agent"
    ]


def test_only_the_turn_that_says_so_interrupts(tmp_path: Path) -> None:
    """The second turn barges into the first reply; the others wait for the agent to finish."""
    path = long_speech(
        tmp_path,
        "turns:\n"
        "  - sound_ms: 500\n    expect: {interrupted: true}\n"
        "  - sound_ms: 500\n    interrupt_after_ms: 400\n    expect: {interrupted: false}\n"
        "  - sound_ms: 500\n    expect: {interrupted: false}\n",
    )
    heard = agent_heard(path)
    assert heard[0] == ("Hello there.", False)
    cut, cut_off = heard[1]
    assert cut_off and cut and LONG.startswith(cut) and cut != LONG
    assert heard[2:] == [(LONG, False), (LONG, False)]


def test_a_turn_overrides_the_scenario_default(tmp_path: Path) -> None:
    """Every turn after the first barges in by default; the third opts out with null."""
    path = long_speech(
        tmp_path,
        "interrupt_after_ms: 400\nturns:\n"
        "  - sound_ms: 500\n    expect: {interrupted: true}\n"
        "  - sound_ms: 500\n    expect: {interrupted: false}\n"
        "  - sound_ms: 500\n    interrupt_after_ms: null\n",
    )
    heard = agent_heard(path)
    assert [interrupted for _, interrupted in heard] == [False, True, False, False]


def test_the_first_turn_can_cut_the_greeting_short(tmp_path: Path) -> None:
    path = long_speech(
        tmp_path,
        "turns:\n  - sound_ms: 500\n    interrupt_after_ms: 300\n",
        greeting="Hello and welcome, " + LONG,
    )
    greeting, cut_off = agent_heard(path)[0]
    assert cut_off and ("Hello and welcome, " + LONG).startswith(greeting)
