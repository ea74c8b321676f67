"""Per-call variables (a lead's name, an appointment time) carried in the answer URL, signed.

An outbound call's answer URL is fetched by Plivo, not by us, so the variables ride in its query
string. Anyone can fetch a URL, so they are signed with HMAC-SHA256 under the service's secret
(``VOICEBRIDGE_API_KEY``): ``/answer`` refuses a query whose variables were not signed by whoever
placed the call, and a caller cannot inject or alter any. They are also bounded (count, key
shape, value length), because they end up in prompts, greetings and logs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from typing import Final

VARS_PARAM: Final = "vb_vars"
SIG_PARAM: Final = "vb_sig"
MAX_VARS: Final = 20
MAX_VALUE_CHARS: Final = 200
_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")
# Control characters, and braces: values are filled into templates that other placeholders
# are filled into afterwards, so a value must not be able to form a placeholder itself.
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f{}]")


class InvalidVars(ValueError):
    """Variables that are malformed, too many or too long, or whose signature does not match."""


def check_vars(values: Mapping[str, object]) -> dict[str, str]:
    """``values`` as a bounded ``str -> str`` mapping, or InvalidVars saying what is wrong."""
    if len(values) > MAX_VARS:
        raise InvalidVars(f"at most {MAX_VARS} variables per call, got {len(values)}")
    out: dict[str, str] = {}
    for key, value in values.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise InvalidVars(
                f"variable name {str(key)[:40]!r}: letters, digits and _, not starting with a "
                "digit, at most 32 characters"
            )
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise InvalidVars(f"variable {key!r}: expected text or a number")
        text = str(value)
        if len(text) > MAX_VALUE_CHARS or _CONTROL.search(text):
            raise InvalidVars(
                f"variable {key!r}: at most {MAX_VALUE_CHARS} characters, no control characters "
                "or braces"
            )
        out[key] = text
    return out


def parse_var_args(pairs: Iterable[str]) -> dict[str, str]:
    """``["name=Ana", "time=3 pm"]`` (the command line's ``--var``) as checked variables."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidVars(f"--var: expected key=value, got {pair[:60]!r}")
        values[key.strip()] = value
    return check_vars(values)


def _signature(encoded: str, secret: str) -> str:
    return hmac.new(secret.encode(), encoded.encode(), hashlib.sha256).hexdigest()


def sign_vars(values: Mapping[str, object], secret: str) -> dict[str, str]:
    """The query parameters that carry ``values``: ``{vb_vars: base64url JSON, vb_sig: hex}``;
    empty when there are none."""
    if not secret:
        raise InvalidVars("signing call variables needs a secret (VOICEBRIDGE_API_KEY)")
    checked = check_vars(values)
    if not checked:
        return {}
    text = json.dumps(checked, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    encoded = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
    return {VARS_PARAM: encoded, SIG_PARAM: _signature(encoded, secret)}


def verify_vars(query: Mapping[str, str], secret: str | None) -> dict[str, str]:
    """The variables in a query signed by :func:`sign_vars`; ``{}`` when it carries none.

    InvalidVars when variables are present but unsigned, signed under another secret, or
    malformed: such a request did not come from a call we placed.
    """
    encoded = query.get(VARS_PARAM)
    signature = query.get(SIG_PARAM)
    if encoded is None and signature is None:
        return {}
    if not secret:
        raise InvalidVars("call variables present but no secret to check them is configured")
    if not encoded or not signature or len(encoded) > 8192:
        raise InvalidVars("call variables without a signature, or too long")
    if not hmac.compare_digest(_signature(encoded, secret), signature):
        raise InvalidVars("call variables: bad signature")
    try:
        decoded = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidVars("call variables: undecodable") from exc
    if not isinstance(decoded, dict):
        raise InvalidVars("call variables: expected an object")
    return check_vars(decoded)
