"""Prometheus metrics of one service: what its calls did and how fast, served at ``/metrics``.

Each app owns a ``CollectorRegistry`` (not prometheus_client's process-wide default), so tests
and several apps in one process never collide. Labels come from small fixed sets (call outcomes,
pipeline roles, error kinds), never from call ids or caller input, so the number of series stays
bounded however many calls the service takes.

In a worker of ``serve --workers N`` the metrics are shared by all workers
(``voicebridge.observe.shared_metrics``): a scrape adds up every worker's values, and what is
otherwise read at scrape time (active calls, counters kept as plain ints) is copied into the
shared files whenever it may have changed (``ServiceMetrics.sync``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Mapping

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily

from voicebridge.call.events import (
    BargeIn,
    CallEvent,
    CallFinished,
    FramesDropped,
    ProviderFailed,
    TurnCompleted,
)
from voicebridge.observe.shared_metrics import (
    multiprocess_dir,
    process_gone,
    service_exposition,
)

log = structlog.get_logger("voicebridge.observe.metrics")

PREFIX = "voicebridge_"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Call outcomes: every session end reason maps to one of these.
OUTCOMES = (
    "caller_hangup",
    "agent_hangup",
    "transfer",
    "timeout",
    "protocol_error",
    "error",
    "draining",
    "refused",
    "other",
)
_OUTCOME_OF = {
    "socket_closed": "caller_hangup",
    "stop_event": "caller_hangup",
    "idle": "agent_hangup",
    "transferred": "transfer",
    "max_call_duration": "timeout",
    "unsupported_format": "protocol_error",
    "invalid_start": "protocol_error",
    "too_many_bad_messages": "protocol_error",
    "no_start": "protocol_error",
    "media_flood": "protocol_error",
    "pipeline_start_failed": "error",
    "stage_failed": "error",
    "internal_error": "error",
    "service_stopping": "draining",
    "draining": "draining",
    # The socket dropped mid-call and the call is kept for Plivo's reconnect; how that ends is
    # in voicebridge_resume_events_total (resumed, finalised, ...).
    "suspended": "suspended",
}
# The turn breakdown of ``TurnTiming.as_dict`` that is one stage's time to its first output,
# by the role of that stage.
STAGE_FIELDS = {"stt": "stt_s", "dialogue": "dialogue_s", "tts": "tts_s"}
DROP_REASONS = ("backpressure", "flood")

_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
_REACTION_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.0)
_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def outcome_of(reason: str | None) -> str:
    """The ``calls_total`` outcome for a session end reason."""
    if not reason:
        return "other"
    if reason.startswith("hangup:"):
        return "agent_hangup"
    return _OUTCOME_OF.get(reason, "other")


class ServiceMetrics:
    """The metric objects of one service, in their own registry."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        stage_names: Mapping[str, str] | None = None,
    ) -> None:
        """``stage_names``: the pipeline's stage name for each role (``{"stt": "whisper"}``),
        the ``stage`` label of the per-stage histogram; roles without one use the role."""
        self.registry = registry or CollectorRegistry(auto_describe=True)
        # Set in a worker of ``serve --workers N``: values live in files all workers share.
        self.shared_dir = multiprocess_dir()
        self._active_count: Callable[[], int] | None = None
        self._mirrors: list[_MirroredCounters] = []
        self.stage_names = {role: (stage_names or {}).get(role, role) for role in STAGE_FIELDS}
        r = self.registry
        self.active_calls = Gauge(
            PREFIX + "active_calls",
            "Calls being handled right now.",
            registry=r,
            multiprocess_mode="livesum",  # the live workers' calls, added up
        )
        self.calls = Counter(PREFIX + "calls", "Calls ended, by outcome.", ["outcome"], registry=r)
        self.turn_latency = Histogram(
            PREFIX + "turn_latency_seconds",
            "Caller's end of speech to the first agent audio played (from Plivo's ack).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.bargein_reaction = Histogram(
            PREFIX + "bargein_reaction_seconds",
            "Caller's speech onset to the clearAudio that cut the agent off (guard included).",
            buckets=_REACTION_BUCKETS,
            registry=r,
        )
        self.stage_first_output = Histogram(
            PREFIX + "stage_first_output_seconds",
            "Per turn, each stage's time from its input to its first output.",
            ["stage", "role"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.provider_errors = Counter(
            PREFIX + "provider_errors",
            "Failed provider calls, by stage and kind of failure.",
            ["stage", "kind"],
            registry=r,
        )
        self.dropped_frames = Counter(
            PREFIX + "dropped_frames",
            "Caller audio frames thrown away, by reason.",
            ["reason"],
            registry=r,
        )
        self.event_loop_lag = Histogram(
            PREFIX + "event_loop_lag_seconds",
            "How late the event loop ran a periodic timer: time it could not serve calls.",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        for outcome in OUTCOMES:
            self.calls.labels(outcome)  # every outcome shows from the start, at 0
        for role, stage in self.stage_names.items():
            self.stage_first_output.labels(stage, role)
        for reason in DROP_REASONS:
            self.dropped_frames.labels(reason)

    def track_active(self, count: Callable[[], int]) -> None:
        """Read the active call count from its owner at scrape time (never out of step); with
        shared metrics, at each ``sync`` (the owner calls it when the count changes)."""
        if self.shared_dir is None:
            self.active_calls.set_function(lambda: float(count()))
        else:
            self._active_count = count
            self.sync()

    def track_resumes(self, stats: Callable[[], Mapping[str, int]]) -> None:
        """Dropped-call resume counters (suspended, resumed, finalised, store errors, ...),
        read from the resume registry at scrape time."""
        self.track_counters(
            "resume_events", "Dropped calls kept for a reconnect, by what happened.", "event", stats
        )

    def track_counters(
        self, name: str, doc: str, label: str, read: Callable[[], Mapping[str, int]]
    ) -> None:
        """Counters kept elsewhere as plain ints (e.g. refused sockets by reason), read at
        scrape time: ``voicebridge_<name>_total{<label>=...}``. With shared metrics they are
        copied into a real counter at each ``sync`` instead (other workers cannot call ``read``)."""
        if self.shared_dir is None:
            self.registry.register(_CountersCollector(PREFIX + name, read, doc, label))
            return
        counter = Counter(PREFIX + name, doc, [label], registry=self.registry)
        self._mirrors.append(_MirroredCounters(counter, read))
        self.sync()

    def sync(self) -> None:
        """With shared metrics: copy what is read at scrape time into the shared files, for the
        scrapes other workers answer. Called on each scrape, each loop-lag tick (0.5 s) and when
        a call starts or ends. A no-op in a single process."""
        if self.shared_dir is None:
            return
        if self._active_count is not None:
            self.active_calls.set(self._active_count())
        for mirror in self._mirrors:
            mirror.sync()

    def close(self) -> None:
        """The service is stopping: with shared metrics, its live gauges (active calls) stop
        counting; its counters stay in the service's totals."""
        if self.shared_dir is not None:
            process_gone(os.getpid())

    def call_subscriber(self) -> MetricsSubscriber:
        """A subscriber that feeds one call's events into these metrics."""
        return MetricsSubscriber(self)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric (with shared metrics, of every worker)."""
        if self.shared_dir is None:
            return generate_latest(self.registry)
        self.sync()
        return service_exposition(self.shared_dir)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """One sample's current value in this process (tests and the health page use it)."""
        return self.registry.get_sample_value(name, labels or {})


class MetricsSubscriber:
    """One call's events into the service's metrics."""

    event_types = (TurnCompleted, BargeIn, ProviderFailed, FramesDropped, CallFinished)

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.m = metrics

    def on_event(self, event: CallEvent) -> None:
        if isinstance(event, TurnCompleted):
            latency = event.timing.get("latency_s")
            if latency is not None:
                self.m.turn_latency.observe(max(0.0, latency))
            for role, field in STAGE_FIELDS.items():
                seconds = event.timing.get(field)
                if seconds is not None:
                    stage = self.m.stage_names[role]
                    self.m.stage_first_output.labels(stage, role).observe(max(0.0, seconds))
        elif isinstance(event, BargeIn):
            if event.reaction_s is not None:
                self.m.bargein_reaction.observe(max(0.0, event.reaction_s))
        elif isinstance(event, ProviderFailed):
            self.m.provider_errors.labels(event.stage[:40], event.error_kind[:20]).inc()
        elif isinstance(event, FramesDropped):
            self.m.dropped_frames.labels(event.reason).inc(event.count)
        elif isinstance(event, CallFinished):
            self.m.calls.labels(outcome_of(event.reason)).inc()


class LoopLagMonitor:
    """Measures event-loop lag: a timer asked to wake every ``interval_s`` seconds, and how
    much later than that it actually ran. Lag is time every call on this loop was stalled."""

    def __init__(self, metrics: ServiceMetrics, interval_s: float = 0.5) -> None:
        self.metrics = metrics
        self.interval_s = interval_s
        self.samples = 0
        self.worst_s = 0.0
        self.sampled = asyncio.Event()  # set after each sample (tests wait on it)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.interval_s)
            lag = max(0.0, loop.time() - before - self.interval_s)
            self.metrics.event_loop_lag.observe(lag)
            self.metrics.sync()  # shared metrics: counters kept as ints reach other workers
            self.samples += 1
            self.worst_s = max(self.worst_s, lag)
            self.sampled.set()
            if lag >= 0.25:
                log.warning("event_loop_lag", lag_s=round(lag, 3))


class _CountersCollector:
    """Counters kept elsewhere (plain ints), exposed as one labelled Prometheus counter."""

    def __init__(
        self, name: str, read: Callable[[], Mapping[str, int]], doc: str, label: str = "event"
    ) -> None:
        self.name = name
        self.read = read
        self.doc = doc
        self.label = label

    def describe(self) -> list[CounterMetricFamily]:
        return [self._family()]

    def collect(self) -> list[CounterMetricFamily]:
        family = self._family()
        for event, value in sorted(self.read().items()):
            family.add_metric([event], float(value))
        return [family]

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.doc, labels=[self.label])


class _MirroredCounters:
    """Counters kept elsewhere as plain ints, copied into a prometheus ``Counter`` (shared
    metrics): each ``sync`` adds what each count grew by since the last."""

    def __init__(self, counter: Counter, read: Callable[[], Mapping[str, int]]) -> None:
        self.counter = counter
        self.read = read
        self.published: dict[str, int] = {}

    def sync(self) -> None:
        for key, value in self.read().items():
            before = self.published.get(key)
            if before is None:
                self.counter.labels(key)  # shows from the start, at 0
                before = 0
            if value > before:
                self.counter.labels(key).inc(value - before)
            self.published[key] = max(value, before)
