"""Where tracing is turned on: the OpenTelemetry SDK, its exporter, and each call's tracer.

Imported only when tracing is on (``TracingSettings.active``): with it off, nothing of
OpenTelemetry is loaded. Needs the ``otel`` extra (``opentelemetry-sdk`` and
``opentelemetry-exporter-otlp-proto-http``).

The standard environment variables are honoured and win over ``tracing:`` in service.yaml:
``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_EXPORTER`` (``otlp``,
``console``, ``none``, comma-separated), ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT``, ``_HEADERS``,
``_TIMEOUT`` and ``_COMPRESSION`` (read by the exporter itself), ``OTEL_TRACES_SAMPLER`` and
``OTEL_TRACES_SAMPLER_ARG`` (read by the SDK), ``OTEL_BSP_*`` (the batch processor) and
``OTEL_PROPAGATORS`` (which headers go to providers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog

from voicebridge.config.service_settings import TracingSettings
from voicebridge.observe.genai import DialogueSpan, dialogue_span, stage_roles
from voicebridge.observe.tracing import CallTracer

try:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "tracing is on but the OpenTelemetry SDK is not installed: "
        "pip install 'voicebridge[otel]' (or set tracing.enabled: false)"
    ) from exc

log = structlog.get_logger("voicebridge.observe.tracing")

INSTRUMENTATION = "voicebridge"
_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


class CallTracing:
    """The service's tracing: one tracer provider, and a ``CallTracer`` for each call."""

    def __init__(
        self,
        provider: TracerProvider,
        *,
        dialogue: DialogueSpan | None = None,
        roles: Mapping[str, str] | None = None,
        pipeline: str = "",
        include_text: bool = True,
    ) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer(INSTRUMENTATION)
        self._dialogue = dialogue or DialogueSpan()
        self._roles = dict(roles or {})
        self._pipeline = pipeline
        self._include_text = include_text

    @classmethod
    def for_pipeline(
        cls, provider: TracerProvider, spec: Any, *, include_text: bool = True
    ) -> CallTracing:
        """Tracing of ``spec``'s calls (a ``PipelineSpec``): its dialogue's model and stages."""
        return cls(
            provider,
            dialogue=dialogue_span(spec),
            roles=stage_roles(spec),
            pipeline=spec.name,
            include_text=include_text,
        )

    def call_tracer(self, **options: Any) -> CallTracer:
        """A new call's subscriber. Make it in the task that starts the call's pipeline."""
        return CallTracer(
            self._tracer,
            pipeline=self._pipeline,
            dialogue=self._dialogue,
            roles=self._roles,
            include_text=self._include_text,
            **options,
        )

    def shutdown(self) -> None:
        """Export what is still queued, then stop (blocking: run it off the event loop)."""
        self.provider.shutdown()


def tracing_from_settings(
    settings: TracingSettings,
    spec: Any,
    environ: Mapping[str, str],
    *,
    make_global: bool = True,
) -> CallTracing:
    """The SDK set up from ``tracing:`` and the ``OTEL_*`` environment. With ``make_global``
    the provider becomes the process's global one if none is set yet, so instrumentation the
    operator adds (of httpx, gRPC...) exports through the same pipeline."""
    provider = TracerProvider(resource=_resource(settings, environ))
    for processor in _processors(settings, environ):
        provider.add_span_processor(processor)
    if make_global and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    log.info(
        "tracing_on",
        exporters=_exporter_names(settings, environ),
        service=provider.resource.attributes.get(SERVICE_NAME),
    )
    return CallTracing.for_pipeline(provider, spec, include_text=settings.include_text)


def _resource(settings: TracingSettings, environ: Mapping[str, str]) -> Resource:
    named = environ.get("OTEL_SERVICE_NAME", "").strip() or "service.name=" in environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    # Resource.create reads the environment; attributes given here would override it.
    return Resource.create({} if named else {SERVICE_NAME: settings.service_name})


def _exporter_names(settings: TracingSettings, environ: Mapping[str, str]) -> list[str]:
    named = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    names = [n.strip() for n in named.split(",") if n.strip()] if named else [settings.exporter]
    return [n for n in names if n != "none"]


def _processors(settings: TracingSettings, environ: Mapping[str, str]) -> list[SpanProcessor]:
    makers: dict[str, Callable[[], SpanExporter]] = {
        "otlp": lambda: _otlp_exporter(settings, environ),
        "console": ConsoleSpanExporter,
    }
    processors: list[SpanProcessor] = []
    for name in _exporter_names(settings, environ):
        maker = makers.get(name)
        if maker is None:
            raise ValueError(f"unknown traces exporter {name!r}: use otlp, console or none")
        processors.append(BatchSpanProcessor(maker()))
    return processors


def _otlp_exporter(settings: TracingSettings, environ: Mapping[str, str]) -> SpanExporter:
    protocol = environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    if protocol.strip().lower() == "grpc":
        raise ValueError(
            "OTLP over gRPC is not shipped (the otel extra exports OTLP over HTTP): "
            "unset OTEL_EXPORTER_OTLP_PROTOCOL or set it to http/protobuf"
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from_env = any(environ.get(name, "").strip() for name in _ENDPOINT_VARS)
    return OTLPSpanExporter(endpoint=None if from_env else settings.endpoint)
