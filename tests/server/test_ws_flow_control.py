"""The WebSocket edge pauses reading only when the app falls behind (``ws_edge``): an app that
keeps up never pauses the socket, one that stalls holds a bounded amount, and nothing is lost."""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.asyncio.client import connect

from voicebridge.server.run import LoopServer, loopback_config
from voicebridge.server.ws_edge import HIGH_WATER_BYTES, EdgeWebSocketProtocol

from .conftest import until

MESSAGE_BYTES = 4096
COUNT = 1500  # 6 MB: far past the high-water mark
READ_CHUNK = 256 * 1024  # asyncio reads at most this much from a socket at once


class App:
    """Accepts one socket, holds its messages back until ``gate`` opens, then reads them all."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.received: list[str] = []
        self.done = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await self.gate.wait()
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                break
            self.received.append(message["text"])
        self.done.set()


def protocol_of(server: LoopServer) -> EdgeWebSocketProtocol:
    [protocol] = server.server.server_state.connections
    assert isinstance(protocol, EdgeWebSocketProtocol)
    return protocol


async def test_a_stalled_app_pauses_reading_at_the_mark_and_loses_nothing() -> None:
    app = App()
    server = LoopServer(loopback_config(app, ws=EdgeWebSocketProtocol), force_exit=True)
    host, port = await server.start()
    messages = [f"{index:08d}".ljust(MESSAGE_BYTES, "x") for index in range(COUNT)]
    try:
        async with connect(f"ws://{host}:{port}/", compression=None, max_queue=None) as ws:

            async def flood() -> None:
                for message in messages:
                    await ws.send(message)

            sending = asyncio.get_running_loop().create_task(flood())
            protocol = protocol_of(server)
            await until(lambda: protocol.read_paused)
            # What waits for the app is bounded by the mark and one read, not by the flood.
            waiting = protocol.queue.qsize() * MESSAGE_BYTES
            assert HIGH_WATER_BYTES < waiting <= HIGH_WATER_BYTES + READ_CHUNK + MESSAGE_BYTES
            app.gate.set()
            await sending
            await until(lambda: len(app.received) == COUNT)
            assert not protocol.read_paused
        await app.done.wait()
    finally:
        await server.stop()
    assert app.received == messages


async def test_an_app_that_keeps_up_never_pauses_reading() -> None:
    app = App()
    app.gate.set()
    server = LoopServer(loopback_config(app, ws=EdgeWebSocketProtocol), force_exit=True)
    host, port = await server.start()
    pauses = 0
    try:
        async with connect(f"ws://{host}:{port}/", compression=None) as ws:
            protocol = protocol_of(server)
            transport = protocol.transport
            pause = transport.pause_reading

            def counting_pause() -> None:
                nonlocal pauses
                pauses += 1
                pause()

            transport.pause_reading = counting_pause  # type: ignore[method-assign]
            for index in range(200):
                await ws.send(f"message {index}")
                await until(lambda n=index + 1: len(app.received) == n)
    finally:
        await server.stop()
    assert pauses == 0
