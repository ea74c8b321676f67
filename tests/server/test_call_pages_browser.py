"""The call pages in a real browser (headless Chromium): the browser's own Basic prompt is the
login, a live call's page follows the call turn by turn, and the finished call's page has its
recording's players.

A scripted call (no models) runs through the real service on loopback on a virtual clock,
stopping after each agent reply until the test lets it go on (``GatedCall``): what the page
shows at each step is exactly that turn. Skipped where Chromium or ``playwright`` is missing, as
``tests/sim/test_call_page_browser.py`` is (``.ci/run`` installs both).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from voicebridge.testing.gated_call import GatedCall

from .call_pages_support import FMT, HOSTILE, KEY, lines, page_settings, spec

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (pip install -e .[dev])"
)
CHROMIUM = os.environ.get("VOICEBRIDGE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(
        f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run installs it)",
        allow_module_level=True,
    )
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--mute-audio", "--no-first-run"]
WAIT_MS = 20_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GatedCall]:
    monkeypatch.setenv("VOICEBRIDGE_API_KEY", KEY)
    gated = GatedCall(page_settings(tmp_path), spec(), lines(), FMT).start()
    yield gated
    gated.stop()


def test_the_browser_gets_the_pages_only_with_the_key(browser: Any, call: GatedCall) -> None:
    url = f"{call.http_base}/calls"
    # Without the key, or with a wrong one, the server answers 401 with a Basic challenge;
    # headless Chromium shows the 401, or gives up on the credentials: never the list.
    for credentials in ({}, {"http_credentials": {"username": "ops", "password": "nope"}}):
        context = browser.new_context(**credentials)
        page = context.new_page()
        try:
            response = page.goto(url)
            assert response is not None and response.status == 401
        except sync_api.Error as exc:
            assert "ERR_INVALID_AUTH_CREDENTIALS" in str(exc)
        assert page.locator("#calls, #no-calls").count() == 0
        assert context.request.get(url).status == 401
        context.close()
    context = browser.new_context(http_credentials={"username": "ops", "password": KEY})
    response = context.new_page().goto(url)
    assert response is not None and response.status == 200
    context.close()


def test_a_live_call_page_follows_the_call_to_its_recorded_end(
    browser: Any, call: GatedCall
) -> None:
    expect = sync_api.expect
    context = browser.new_context(http_credentials={"username": "ops", "password": KEY})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    call.wait_reached(1)  # the greeting and the first reply have played; the call waits
    page.goto(f"{call.http_base}/calls")
    row = page.locator("#calls tbody tr")
    expect(row).to_have_count(1)
    assert row.get_attribute("data-live") == "true"
    page.locator("#calls a").click()
    expect(page.locator("#live")).to_be_visible()
    caller = page.locator(".msg.caller .body")
    expect(caller).to_have_text([HOSTILE])  # shown as text: the markup in it never ran
    assert page.locator("script", has_text="alert(1)").count() == 0
    assert page.locator("audio.track").count() == 0  # the audio comes once the call ends

    call.release(1)  # the caller says its second line: the page shows it without a click
    call.wait_reached(2)
    expect(caller).to_have_text([HOSTILE, "and on sunday"], timeout=WAIT_MS)
    expect(page.locator(".msg.agent")).to_have_count(3)  # greeting and two replies
    expect(page.locator("#live")).to_be_visible()

    call.release(2)
    call.release(3)  # "goodbye": the agent hangs up
    call.wait_finished()
    expect(page.locator("audio.track")).to_have_count(3, timeout=WAIT_MS)  # recorded
    expect(page.locator("#live")).to_have_count(0)
    expect(caller).to_have_text([HOSTILE, "and on sunday", "goodbye"])
    page.wait_for_function(
        "Array.from(document.querySelectorAll('audio.track')).every(a => a.readyState >= 1)"
    )
    durations = page.evaluate(
        "Array.from(document.querySelectorAll('audio.track'), a => a.duration)"
    )
    assert min(durations) > 5.0  # three turns of speech and replies
    assert errors == []
    context.close()
