"""Hypothesis strategies for Plivo's messages, shared by the fuzz tests: valid events of every
type, mutations of them (missing, extra and mistyped fields, numeric strings, huge values, bad
base64, odd payload sizes, unicode, deep nesting) and raw frames (non-JSON, binary, truncated)."""

from __future__ import annotations

import base64
import json
import string
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

KNOWN = {"start", "media", "dtmf", "playedStream", "played", "clearedAudio", "stop"}
KNOWN |= {"playFailed", "error"}

FUZZ = settings(
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- building blocks --------------------------------------------------------------------------

ids = st.text(min_size=1, max_size=40)
numeric = st.one_of(
    st.integers(0, 2**63),
    st.integers(0, 10**6).map(str),
    st.integers(0, 10**6).map(lambda n: f" {n} "),
)
optional_seq = st.one_of(st.none(), numeric)
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(10**400), 10**400),  # beyond int64: Python takes them, Plivo never sends them
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.text(alphabet=string.digits, min_size=1, max_size=30),  # numeric strings
    # odd numbers: Arabic-Indic three, full-width 8000, NUL, a lone surrogate
    st.sampled_from(["", " ", "-1", "1e3", "0x10", "\u0663", "\uff18\uff10\uff10\uff10"]),
    st.sampled_from(["\u0000", "\udcff", "NaN"]),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)

FORMATS = [("audio/x-mulaw", 8000), ("audio/x-l16", 8000), ("audio/x-l16", 16000)]


@st.composite
def start_events(draw: st.DrawFn) -> dict[str, Any]:
    encoding, rate = draw(st.sampled_from(FORMATS))
    spelled = draw(st.sampled_from([encoding, f"{encoding};rate={rate}", encoding.upper()]))
    sample_rate: Any = draw(st.sampled_from([rate, str(rate), float(rate)]))
    start: dict[str, Any] = {
        "callId": draw(ids),
        "streamId": draw(ids),
        "mediaFormat": {"encoding": spelled, "sampleRate": sample_rate},
    }
    if draw(st.booleans()):
        start["accountId"] = draw(st.one_of(st.text(max_size=20), st.integers(0, 10**12)))
    if draw(st.booleans()):
        start["tracks"] = draw(st.lists(st.sampled_from(["inbound", "outbound"]), max_size=2))
    message: dict[str, Any] = {"event": "start", "start": start}
    headers = draw(
        st.one_of(
            st.none(),
            st.dictionaries(st.text(max_size=8), json_leaf, max_size=3),
            st.text(max_size=40),
            st.just("tenant=acme;lang=en"),
            st.just("tenant=acme,lang=en"),
            st.just('{"tenant": "acme"}'),
        )
    )
    if headers is not None:
        message["extra_headers"] = headers
    return message


@st.composite
def media_events(draw: st.DrawFn) -> dict[str, Any]:
    size = draw(st.sampled_from([0, 2, 160, 320, 640, 1280]) | st.integers(0, 2048))
    payload = base64.b64encode(draw(st.binary(min_size=size, max_size=size))).decode()
    media: dict[str, Any] = {"payload": payload}
    if draw(st.booleans()):
        media["track"] = draw(st.sampled_from(["inbound", "outbound"]))
    if draw(st.booleans()):
        media["timestamp"] = draw(numeric)
    if draw(st.booleans()):
        media["chunk"] = draw(numeric)
    return {"event": "media", "streamId": draw(ids), "media": media}


def _with_common(draw: st.DrawFn, message: dict[str, Any]) -> dict[str, Any]:
    seq = draw(optional_seq)
    if seq is not None:
        message["sequenceNumber"] = seq
    if message["event"] != "start" and draw(st.booleans()):
        message["streamId"] = draw(ids)
    return message


dtmf_digits = st.one_of(
    st.sampled_from(list("0123456789*#ABCD")),
    st.sampled_from(list("abcd")),
    st.integers(0, 9),
    st.sampled_from([" 5 ", "#"]),
)
reasons = st.one_of(st.none(), st.text(max_size=40), json_value)


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from([*sorted(KNOWN), "unknown"]))
    if kind == "start":
        message = draw(start_events())
    elif kind == "media":
        message = draw(media_events())
    elif kind == "dtmf":
        message = {"event": "dtmf", "dtmf": {"digit": draw(dtmf_digits)}}
    elif kind in ("playedStream", "played"):
        message = {"event": kind, "name": draw(st.text(max_size=60))}
    elif kind == "unknown":
        name = draw(st.text(max_size=20).filter(lambda n: n not in KNOWN))
        message = {"event": name, "anything": draw(json_value)}
    else:
        message = {"event": kind}
        reason = draw(reasons)
        if reason is not None:
            message["reason"] = reason
        if kind == "playFailed" and draw(st.booleans()):
            message["name"] = draw(st.text(max_size=30))
    return _with_common(draw, message)


# --- mutations ----------------------------------------------------------------------------------


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON value (dict keys and list indexes), down to depth 6."""
    found = [prefix]
    if len(prefix) >= 6:
        return found
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += _paths(inner, (*prefix, index))
    return found


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value.get(head), rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


def _drop(value: Any, path: tuple[Any, ...]) -> Any:
    head, rest = path[0], path[1:]
    if rest:
        if isinstance(value, dict):
            return {**value, head: _drop(value[head], rest)}
        copy = list(value)
        copy[head] = _drop(copy[head], rest)
        return copy
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k != head}
    return [v for i, v in enumerate(value) if i != head]


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


odd_payloads = st.one_of(
    st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()[:-1] or "A"),  # cut short
    st.text(max_size=40),  # mostly not base64
    st.sampled_from(["!!!", "AAA", "A===", "====", "AA AA", "AAAA\n", "QUJD\u00e9"]),
    st.integers(0, 50).map(lambda n: base64.b64encode(b"\x01" * (2 * n + 1)).decode()),  # odd L16
    st.just(base64.b64encode(b"\x00" * 200_001).decode()),  # large and odd
)


@st.composite
def mutated_events(draw: st.DrawFn) -> str:
    message: Any = draw(valid_events())
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(message)
        action = draw(st.sampled_from(["drop", "replace", "extra", "payload", "nest", "huge"]))
        if action == "drop" and len(paths) > 1:
            message = _drop(message, draw(st.sampled_from(paths[1:])))
        elif action == "replace":
            message = _replace(message, draw(st.sampled_from(paths)), draw(json_value))
        elif action == "extra":
            targets = [p for p in paths if isinstance(_get(message, p), dict)]
            if targets:
                target = draw(st.sampled_from(targets))
                extra = {**_get(message, target), draw(st.text(max_size=10)): draw(json_value)}
                message = _replace(message, target, extra)
        elif action == "payload":
            media = message.get("media") if isinstance(message, dict) else None
            if isinstance(media, dict):
                message = _replace(message, ("media", "payload"), draw(odd_payloads))
        elif action == "nest":
            depth = draw(st.integers(1, 200) | st.integers(900, 1100))
            message = _replace(message, draw(st.sampled_from(paths)), _nested(depth))
        elif action == "huge":
            huge = draw(st.sampled_from([10**300, 2**64, -(2**63), 1e308, "9" * 5000, "x" * 10**5]))
            message = _replace(message, draw(st.sampled_from(paths)), huge)
    try:
        return json.dumps(message, ensure_ascii=draw(st.booleans()))
    except (ValueError, RecursionError):
        return json.dumps({"event": "media", "media": {"payload": "unencodable"}})


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


@st.composite
def raw_frames(draw: st.DrawFn) -> str | bytes:
    kind = draw(st.sampled_from(["text", "binary", "scalar", "truncated", "deep", "odd_json"]))
    if kind == "text":
        return draw(st.text(max_size=200))
    if kind == "binary":
        return draw(st.binary(max_size=400))
    if kind == "scalar":
        return json.dumps(draw(json_value))
    if kind == "truncated":
        text = json.dumps(draw(valid_events()))
        return text[: draw(st.integers(0, max(0, len(text) - 1)))]
    if kind == "deep":
        depth = draw(st.integers(1, 200_000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        closed = draw(st.booleans())
        inner = opener * depth + "1" + (closer * depth if closed else "")
        return draw(st.sampled_from([inner, '{"event": "media", "media": ' + inner + "}"]))
    return draw(
        st.sampled_from(
            [
                "",
                " ",
                "{}",
                '{"event": null}',
                '{"event": "media", "media": null}',
                '{"event": "start", "start": []}',
                "NaN",
                '{"event": "media"}{"event": "media"}',
                '{"event": "media", "event": 3}',
                "\ufeff{}",
                '{"event": "\\ud800"}',
            ]
        )
    )
