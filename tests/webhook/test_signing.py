"""Signatures as a receiver checks them: the exact bytes, the secret, the timestamp's age."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from voicebridge.webhook.signing import (
    idempotency_key,
    signature,
    signature_header,
    verify_signature,
)

SECRET = "whsec-0123456789abcdef"
NOW = 1_700_000_000
BODY = b'{"id":"abc","event":"call.ended"}'


def test_a_signed_body_verifies_and_any_change_does_not() -> None:
    header = signature_header(SECRET, NOW, BODY)
    assert header == f"t={NOW},v1={signature(SECRET, NOW, BODY)}"
    assert verify_signature(SECRET, header, BODY, now=NOW)
    assert not verify_signature(SECRET, header, BODY + b" ", now=NOW)  # re-serialised: no
    assert not verify_signature("another-secret-0123", header, BODY, now=NOW)
    forged = header.replace(f"t={NOW}", f"t={NOW + 1}")  # a fresher timestamp on old bytes
    assert not verify_signature(SECRET, forged, BODY, now=NOW)


def test_an_old_or_future_timestamp_is_refused() -> None:
    header = signature_header(SECRET, NOW, BODY)
    assert verify_signature(SECRET, header, BODY, now=NOW + 299)
    assert not verify_signature(SECRET, header, BODY, now=NOW + 301)  # a replay, later
    assert not verify_signature(SECRET, header, BODY, now=NOW - 301)
    assert verify_signature(SECRET, header, BODY, now=NOW + 3000, tolerance_s=3600)


def test_malformed_headers_are_refused_and_a_rotated_secret_is_accepted() -> None:
    for header in (None, "", "v1=abc", f"t={NOW}", "t=x,v1=y", "garbage", "t=1," * 1000):
        assert not verify_signature(SECRET, header, BODY, now=NOW)
    old = signature("old-secret-0123456789", NOW, BODY)
    both = f"t={NOW},v1={old},v1={signature(SECRET, NOW, BODY)}"
    assert verify_signature(SECRET, both, BODY, now=NOW)
    assert verify_signature("old-secret-0123456789", both, BODY, now=NOW)


def test_the_idempotency_key_is_stable_per_call_segment() -> None:
    key = idempotency_key("call", "stream", 0, "call.ended")
    assert key == idempotency_key("call", "stream", 0, "call.ended")
    assert len(key) == 32 and int(key, 16) >= 0
    others = {
        idempotency_key("call", "stream", 1, "call.ended"),
        idempotency_key("call", "stream2", 0, "call.ended"),
        idempotency_key("call2", "stream", 0, "call.ended"),
    }
    assert key not in others and len(others) == 3


def test_the_receiver_snippet_in_the_docs_verifies_what_the_worker_signs() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
    blocks = re.findall(r"```python\n(.*?)```", docs.read_text(encoding="utf-8"), re.S)
    (snippet,) = [b for b in blocks if "def verify(" in b]
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)  # the receiver's own code, as a reader would paste it
    verify = namespace["verify"]
    now = int(time.time())
    header = signature_header(SECRET, now, BODY)
    assert verify(SECRET, header, BODY)
    assert not verify(SECRET, header, BODY + b"x")
    assert not verify(SECRET, signature_header(SECRET, now - 1000, BODY), BODY)
    assert not verify(SECRET, None, BODY)
