"""Provider stages: the time the framework (stage + SDK + client transport) adds per request.

Each provider stage runs in a small real-time ``Pipeline`` against its loopback wire fake from
``tests/providers`` answering at once. For every request we take, on ``time.monotonic``:

* dialogue / TTS: input frame pushed -> first ``AgentText`` / ``AgentAudio`` at the sink, minus
  the fake's own handling (request seen by the fake's handler -> its last response write);
* STT: the fake handing its final result to its transport -> the final ``Transcript`` at the
  sink (``SpeechEnded`` is pushed before the final is due, so nothing waits for the VAD).

Usage: ``PYTHONPATH=. /work/venv/bin/python bench/provider_overhead.py [-n 50]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

FAKES = Path(__file__).resolve().parents[1] / "tests" / "providers"
sys.path.insert(0, str(FAKES))

import aws_fakes  # noqa: E402
import google_fakes  # noqa: E402
import openai_fakes  # noqa: E402

from voicebridge.call.context import CallContext, CallInfo  # noqa: E402
from voicebridge.frames import (  # noqa: E402
    AgentAudio,
    AgentText,
    Frame,
    SpeechEnded,
    SpeechStarted,
    Transcript,
)
from voicebridge.runtime.pipeline import Pipeline  # noqa: E402
from voicebridge.testing.harness import call_started  # noqa: E402

now = time.monotonic


# --- fakes that note when they answer -----------------------------------------------------------


class TimedOpenAI(openai_fakes.FakeOpenAI):
    """Notes the time of each response write; ``Recorded.time`` is when the body was read."""

    def __init__(self) -> None:
        super().__init__(api_key="sk-fake")
        self.writes: list[float] = []

    def _wrap(self, send: Any) -> Any:
        async def timed(message: dict[str, Any]) -> None:
            await send(message)
            self.writes.append(now())

        return timed

    async def _chat(self, scope: Any, receive: Any, send: Any) -> None:
        await super()._chat(scope, receive, self._wrap(send))

    async def _speech(self, scope: Any, receive: Any, send: Any) -> None:
        await super()._speech(scope, receive, self._wrap(send))


class TimedAwsHttp(aws_fakes.FakeAwsHttp):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.spans: list[tuple[float, float]] = []

    async def _handle(self, request: Any) -> Any:
        t0 = now()
        response = await super()._handle(request)
        self.spans.append((t0, now()))
        return response


class TimedTranscribe(aws_fakes.FakeTranscribe):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.final_at: list[float] = []

    async def _final(self, ws: Any, u: Any, now_ms: float) -> None:
        await super()._final(ws, u, now_ms)
        self.final_at.append(now())


class TimedGoogle(google_fakes.FakeGoogle):
    def __init__(self) -> None:
        super().__init__()
        self.spans: list[tuple[float, float]] = []
        self.final_at: list[float] = []

    async def _unary(self, method: str, request: Any, context: Any, answer: Any) -> Any:
        t0 = now()
        result = await super()._unary(method, request, context, answer)
        self.spans.append((t0, now()))
        return result

    async def _stt(self, method: str, requests: Any, context: Any) -> Any:
        async for response in super()._stt(method, requests, context):
            if response.results and response.results[0].is_final:
                self.final_at.append(now())
            yield response


# --- the harness --------------------------------------------------------------------------------


class Timed:
    """One stage in a real-time Pipeline; output frames stamped with the wall clock."""

    def __init__(self, stage: Any, info: CallInfo) -> None:
        self.info = info
        self.out: list[tuple[float, Frame]] = []
        self.errors: list[BaseException] = []
        self.pipeline = Pipeline(
            [stage],
            CallContext(info),
            self._sink,
            on_error=lambda s, exc: self.errors.append(exc),
            on_provider_error=lambda s, exc: self.errors.append(exc),
        )

    async def _sink(self, frame: Frame) -> None:
        self.out.append((now(), frame))

    async def __aenter__(self) -> Timed:
        await self.pipeline.start()
        await self.pipeline.push(call_started(self.info))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pipeline.stop()

    async def first(self, kind: type, since: int, pred: Callable[[Any], bool] = bool) -> float:
        deadline = now() + 5.0
        while True:
            for t, frame in self.out[since:]:
                if isinstance(frame, kind) and pred(frame):
                    return t
            if self.errors:
                raise RuntimeError(f"stage failed: {self.errors[0]!r}")
            if now() > deadline:
                raise TimeoutError(f"no {kind.__name__} within 5 s")
            await asyncio.sleep(0)


async def request_reply(
    run: Timed, n: int, make: Callable[[int], Frame], kind: type, fake_span: Callable[[], float]
) -> tuple[list[float], list[float]]:
    """Totals and framework-added times (total minus the fake's span) for n requests."""
    totals, added = [], []
    for i in range(n + 3):  # 3 warm-up requests (connections, clients) are left out
        since = len(run.out)
        t0 = now()
        await run.pipeline.push(make(i))
        t1 = await run.first(kind, since)
        await asyncio.sleep(0.01)  # let the last writes and the turn settle
        if i >= 3:
            total = t1 - t0
            totals.append(total)
            added.append(total - fake_span())
    return totals, added


# --- the stages ---------------------------------------------------------------------------------

INFO = CallInfo(call_id="5f1b9a2e-0000-4000-8000-000000000001", stream_id="s-1", sample_rate=8000)


def said(i: int) -> Frame:
    return Transcript(f"what time do you open on day {i}", final=True)


def sentence(i: int) -> Frame:
    return AgentText("Hello there.", turn=i + 1, last=True)


async def bench_openai(n: int) -> dict[str, Any]:
    from voicebridge.stages.dialogue.llm import Llm
    from voicebridge.stages.tts.openai_tts import OpenAITts

    os.environ["OPENAI_API_KEY"] = "sk-fake"
    results = {}
    async with TimedOpenAI() as fake:
        fake.default_chat = openai_fakes.ChatReply(text="We open at seven.")

        def chat_span() -> float:
            return fake.writes[-1] - fake.chat_requests[-1].time

        stage = Llm(base_url=fake.base_url, max_retries=0, dtmf_wait_s=0)
        async with Timed(stage, INFO) as run:
            results["llm (OpenAI chat, SSE)"] = await request_reply(
                run, n, said, AgentText, chat_span
            )

        def speech_span() -> float:
            return fake.writes[-1] - fake.speech_requests[-1].time

        stage = OpenAITts(base_url=fake.base_url, max_retries=0)
        async with Timed(stage, INFO) as run:
            results["openai_tts"] = await request_reply(run, n, sentence, AgentAudio, speech_span)
    return results


async def bench_aws(n: int) -> dict[str, Any]:
    from voicebridge.stages.aws_common import clear_clients
    from voicebridge.stages.dialogue.lex import LexDialogue
    from voicebridge.stages.tts.polly import Polly

    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)
    os.environ.update(
        AWS_ACCESS_KEY_ID=aws_fakes.ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=aws_fakes.SECRET_KEY,
        AWS_REGION=aws_fakes.REGION,
        AWS_DEFAULT_REGION=aws_fakes.REGION,
        AWS_CONFIG_FILE="/nonexistent/aws-config",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent/aws-credentials",
        AWS_EC2_METADATA_DISABLED="true",
    )
    clear_clients()
    results = {}
    async with TimedAwsHttp() as fake:

        def span() -> float:
            t0, t1 = fake.spans[-1]
            return t1 - t0

        stage = LexDialogue(
            bot_id="BOTID12345",
            bot_alias_id="ALIAS12345",
            locale_id="en_GB",
            endpoint_url=fake.url,
            retry_backoff_s=0.01,
        )
        async with Timed(stage, INFO) as run:
            results["lex (Lex V2 RecognizeText)"] = await request_reply(
                run, n, said, AgentText, span
            )
        stage = Polly(endpoint_url=fake.url, retry_backoff_s=0.01)
        async with Timed(stage, INFO) as run:
            results["polly"] = await request_reply(run, n, sentence, AgentAudio, span)
    return results


async def bench_google(n: int) -> dict[str, Any]:
    from voicebridge.stages.dialogue.dialogflow import Dialogflow
    from voicebridge.stages.tts.google_tts import GoogleTts

    results = {}
    async with TimedGoogle() as fake:

        def span() -> float:
            t0, t1 = fake.spans[-1]
            return t1 - t0

        stage = Dialogflow(endpoint=fake.endpoint, insecure=True, project="proj-1", agent="a-1")
        async with Timed(stage, INFO) as run:
            results["dialogflow (CX DetectIntent, gRPC)"] = await request_reply(
                run, n, said, AgentText, span
            )
        stage = GoogleTts(endpoint=fake.endpoint, insecure=True)
        async with Timed(stage, INFO) as run:
            results["google_tts (gRPC)"] = await request_reply(run, n, sentence, AgentAudio, span)
    return results


async def utterances(run: Timed, n: int, final_at: list[float]) -> tuple[list[float], list[float]]:
    """Speech, SpeechEnded at once, then silence until the fake finalizes; fake final ->
    final Transcript at the sink."""
    rate = run.info.sample_rate
    t_ms = 0.0
    added: list[float] = []
    for i in range(n + 2):
        frames = google_fakes.audio_frames([("speech", 0.4)], rate, t_ms)
        silence = google_fakes.audio_frames([("silence", 0.6)], rate, t_ms + 400)
        since, finals = len(run.out), len(final_at)
        await run.pipeline.push(SpeechStarted(at_ms=t_ms))
        for frame in frames:
            await run.pipeline.push(frame)
        await run.pipeline.push(SpeechEnded(at_ms=t_ms + 400, started_ms=t_ms))
        for frame in silence:
            await run.pipeline.push(frame)
            await asyncio.sleep(0.001)  # a little pacing, so the stream keeps up
        t1 = await run.first(Transcript, since, lambda f: f.final)
        t_ms += 1000.0
        if i >= 2 and len(final_at) > finals:
            added.append(t1 - final_at[finals])
        await asyncio.sleep(0.02)
    return [], added


async def bench_stt(n: int) -> dict[str, Any]:
    from voicebridge.stages.stt.google_stt import GoogleStt
    from voicebridge.stages.stt.transcribe import Transcribe

    results = {}
    async with TimedTranscribe(lines=["what time do you open"] * (n + 5)) as fake:
        stage = Transcribe(endpoint=fake.url, reconnect_backoff_s=0.01)
        async with Timed(stage, INFO) as run:
            results["transcribe (WebSocket stream)"] = await utterances(run, n, fake.final_at)
    async with TimedGoogle() as fake:
        fake.stt_lines = ["what time do you open"] * (n + 5)
        stage = GoogleStt(endpoint=fake.endpoint, insecure=True, project="proj-1")
        async with Timed(stage, INFO) as run:
            results["google_stt (gRPC stream, v2)"] = await utterances(run, n, fake.final_at)
    return results


def ms(values: list[float], q: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))
    return f"{1000 * (statistics.median(ordered) if q == 0.5 else ordered[index]):.2f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50, help="requests per stage (default 50)")
    n = parser.parse_args().n
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    results: dict[str, Any] = {}
    for group in (bench_openai, bench_aws, bench_google, bench_stt):
        started = now()
        try:
            results.update(await group(n))
        except Exception as exc:  # report and go on with the other providers
            print(f"{group.__name__} failed: {exc!r}", file=sys.stderr)
        print(f"{group.__name__}: {now() - started:.1f} s", file=sys.stderr)
    print("| stage | n | total p50 ms | total p95 ms | added p50 ms | added p95 ms |")
    print("|---|---|---|---|---|---|")
    for name, (totals, added) in results.items():
        print(
            f"| {name} | {len(added)} | {ms(totals, 0.5)} | {ms(totals, 0.95)} "
            f"| {ms(added, 0.5)} | {ms(added, 0.95)} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
