"""The call's trace context, as headers a provider stage can put on its outgoing requests.

Tracing builds its spans after the fact from the call's events, so no span is "current" while a
stage runs. Instead the call's tracer (``observe.tracing.CallTracer``) binds a per-call headers
dict into a context variable when the call's session is made, in the connection's task, before
the pipeline's stage tasks are created: every stage task (and each request task it starts)
inherits it. When the call is answered the tracer writes the W3C ``traceparent`` of the call's
root span into that dict, and a stage that builds HTTP requests sends ``trace_headers()`` along.

This module imports nothing of OpenTelemetry: with tracing off the variable is never set and
``trace_headers()`` is one context-variable read that returns ``None``.
"""

from __future__ import annotations

from contextvars import ContextVar

_call_headers: ContextVar[dict[str, str] | None] = ContextVar(
    "voicebridge_call_trace_headers", default=None
)


def bind_call_headers() -> dict[str, str]:
    """A fresh, empty headers dict for this task's call (and the tasks it creates from now on).
    The caller fills it once the call's root span exists."""
    headers: dict[str, str] = {}
    _call_headers.set(headers)
    return headers


def trace_headers() -> dict[str, str] | None:
    """The current call's trace headers (``traceparent``, maybe ``tracestate``/``baggage``) as
    a copy to send, or ``None`` when tracing is off or the call has no root span yet."""
    headers = _call_headers.get()
    return dict(headers) if headers else None
