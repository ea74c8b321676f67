"""The agent service: one ASGI app on one port: /answer, /stream, /status, /health, /metrics."""

from voicebridge.server.app import create_app
from voicebridge.server.run import running_service, serve

__all__ = ["create_app", "running_service", "serve"]
