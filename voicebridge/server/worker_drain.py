"""Graceful drain in a worker process (``voicebridge serve --workers N``).

With several workers, uvicorn's supervisor owns the signals: on SIGTERM it sends SIGTERM to each
worker, whose own uvicorn server would stop at once and cut live calls off. Each worker therefore
takes SIGTERM over: it drains (``/health`` 503, new streams refused, live calls finish up to
``drain.deadline_s``, the rest hear the goodbye), then hands the signal to uvicorn's own handler,
which shuts the worker down as usual. A second SIGTERM ends the live calls at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any

import structlog

from voicebridge.server.drain import Drainer

log = structlog.get_logger("voicebridge.server")


def drain_on_sigterm(drainer: Drainer) -> None:
    """Install the worker's SIGTERM handler; call from the app's start-up, inside uvicorn."""
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return  # not under a uvicorn server that handles signals: nothing to hand over to
    hand_over: Callable[..., Any] = previous
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def stop_server(_: object = None) -> None:
        hand_over(signal.SIGTERM, None)  # uvicorn: should_exit, then its usual shutdown

    def on_sigterm() -> None:
        received.append(signal.SIGTERM)
        if len(received) == 1:
            log.info("shutdown_requested", signal="SIGTERM", pid=os.getpid(), workers=True)
            drainer.start().add_done_callback(stop_server)
        else:
            log.warning("shutdown_forced", signal="SIGTERM", pid=os.getpid(), workers=True)
            loop.create_task(drainer.stop_now()).add_done_callback(stop_server)

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
