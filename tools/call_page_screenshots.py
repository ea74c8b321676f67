"""The screenshots of the call pages in docs/call-pages.md, taken in headless Chromium.

A scripted call (no models: scripted transcriber and dialogue, a tone speaker) runs through the
real service on loopback with recording on; the list and the call's page are shot while the
call is live, and the call's page again once it has ended::

    PYTHONPATH=$PWD python tools/call_page_screenshots.py            # into docs/images/
    PYTHONPATH=$PWD python tools/call_page_screenshots.py --out /tmp/shots

Needs the ``playwright`` package and a Chromium (``apt-get install chromium``, or give its path
in ``VOICEBRIDGE_CHROMIUM``); playwright never downloads a browser here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from voicebridge.config import ServiceSettings, load_pipeline_text
from voicebridge.plivo.formats import StreamFormat
from voicebridge.sim.signals import speech_like
from voicebridge.testing.gated_call import GatedCall

KEY = "screenshot-key-0123456789"
RATE = 8000
PIPELINE = """
name: bakery
stages:
  - type: decode
  - type: vad
    params: {min_silence_ms: 300, forward_audio: false}
  - type: voicebridge.testing:ScriptedStt
    params: {lines: ["when are you open", "and on sundays", "goodbye"]}
  - type: voicebridge.testing:ScriptedDialogue
    params:
      greeting: "Hello, Rosa's bakery here."
      reply: "We open at seven and close at six. Anything else?"
      think_s: 0.3
  - type: voicebridge.testing:ToneSpeaker
    params: {ms_per_char: 12}
  - type: encode
"""
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--mute-audio", "--no-first-run"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("VOICEBRIDGE_CHROMIUM") or shutil.which("chromium")
    if not chromium:
        print("no Chromium: apt-get install chromium, or set VOICEBRIDGE_CHROMIUM", file=sys.stderr)
        return 2
    os.environ["VOICEBRIDGE_API_KEY"] = KEY
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        settings = ServiceSettings.model_validate(
            {
                "events": {"dir": f"{tmp}/events"},
                "recording": {"dir": f"{tmp}/recordings"},
                "call_pages": {"poll_s": 0.5},
            }
        )
        lines = [speech_like(1.2, RATE), speech_like(0.9, RATE), speech_like(0.6, RATE)]
        call = GatedCall(
            settings, load_pipeline_text(PIPELINE), lines, StreamFormat("audio/x-l16", RATE)
        )
        call.start()
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium, args=ARGS)
                context = browser.new_context(
                    viewport={"width": 1200, "height": 800},
                    http_credentials={"username": "ops", "password": KEY},
                )
                page = context.new_page()
                call.wait_reached(1)
                call.release(1)
                call.wait_reached(2)
                page.goto(f"{call.http_base}/calls")
                page.screenshot(
                    path=str(args.out / "call-pages-list.png"),
                    clip={"x": 0, "y": 0, "width": 1200, "height": 260},
                )
                page.click("#calls a")
                page.wait_for_selector("#live")
                page.screenshot(path=str(args.out / "call-page-live.png"))
                call.release(2)
                call.wait_finished()
                page.wait_for_selector("audio.track")  # the live page reloaded, finished
                page.screenshot(path=str(args.out / "call-page-finished.png"), full_page=True)
                browser.close()
        finally:
            call.stop()
    for name in ("call-pages-list.png", "call-page-live.png", "call-page-finished.png"):
        print(f"{args.out / name}: {(args.out / name).stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
