"""Reaching a running service for ``voicebridge call``: where to stream, and, when that fails,
one line that says why and what to try."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

from voicebridge.cli_errors import CliError, ExitCode
from voicebridge.frames import PCM
from voicebridge.plivo.formats import StreamFormat
from voicebridge.sim.answer import answer_call
from voicebridge.sim.caller import CallRecord, PlivoCaller

_START_HINT = "is the service running there? (start one with: voicebridge serve)"


async def resolve_target(
    url: str, fmt: StreamFormat | None
) -> tuple[str, StreamFormat, str | None]:
    """(stream URL, format, call UUID). A ws(s) URL is used as is; an http(s) URL is asked for
    its answer XML like Plivo does, and the call must then start with the UUID it was asked for
    (a service with stream tokens admits only that call)."""
    parts = urlsplit(url)
    if parts.scheme in ("ws", "wss"):
        return url, fmt or StreamFormat.from_short("l16", 16000), None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CliError(
            ExitCode.USAGE,
            f"call: expected an http://, https://, ws:// or wss:// URL, got {url!r}",
        )
    answer_url = url if parts.path not in ("", "/") else url.rstrip("/") + "/answer"
    try:
        answered = await answer_call(answer_url)
    except httpx.HTTPStatusError as exc:
        status, text = exc.response.status_code, " ".join(exc.response.text.split())[:200]
        if "html" in exc.response.headers.get("content-type", ""):
            text = "an HTML page; is it a voicebridge service's base URL?"
        hint = "; set PLIVO_AUTH_TOKEN to sign like Plivo" if status == 403 else ""
        raise CliError(
            ExitCode.CONNECT, f"call: {answer_url} answered {status}: {text}{hint}"
        ) from None
    except httpx.TransportError as exc:
        reason = str(exc) or type(exc).__name__
        raise CliError(
            ExitCode.CONNECT, f"call: cannot reach {answer_url} ({reason}); {_START_HINT}"
        ) from None
    except ValueError as exc:
        raise CliError(ExitCode.CONNECT, f"call: {exc}; is it a voicebridge answer URL?") from None
    return answered.url, fmt or answered.fmt, answered.call_uuid


async def place_call(
    caller: PlivoCaller,
    utterances: Sequence[PCM],
    *,
    gap_s: float,
    reply_timeout_s: float,
    interrupt_after_s: float | None,
) -> CallRecord:
    """``caller.run_turns``, with a refused or failed connection as a CliError."""
    where = caller.url.split("?", 1)[0]
    try:
        return await caller.run_turns(
            utterances,
            gap_s=gap_s,
            reply_timeout_s=reply_timeout_s,
            interrupt_after_s=interrupt_after_s,
        )
    except InvalidStatus as exc:  # e.g. a ws:// URL without the stream token
        body = " ".join(exc.response.body.decode(errors="replace").split())[:200]
        raise CliError(
            ExitCode.CONNECT,
            f"call: {where} refused the WebSocket ({exc.response.status_code}: {body})",
        ) from None
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
        reason = str(exc) or type(exc).__name__
        raise CliError(
            ExitCode.CONNECT, f"call: cannot connect to {where} ({reason}); {_START_HINT}"
        ) from None
