"""A pipeline stage that stands for a provider SDK logging through the standard library
(botocore, grpc, httpx do): its lines must come out as the service's lines, tagged with the call.
Used from YAML as ``tests.e2e.library_stage:LibraryLogger``."""

from __future__ import annotations

import logging

from voicebridge.frames import AgentText, CallStarted, Frame
from voicebridge.runtime.stage import Stage

LOGGER = "thirdparty.sdk"


class LibraryLogger(Stage):
    type_name = "library_logger"
    role = "processor"
    description = "Test stage: logs through a stdlib logger when the call starts."
    consumes = (AgentText,)  # placed after the dialogue; passes everything on
    produces = (AgentText,)

    async def process(self, frame: Frame) -> None:
        if isinstance(frame, CallStarted):
            logging.getLogger(LOGGER).warning("sdk session opened (%s)", "stdlib")
        await self.emit(frame)
