"""The parameters of Plivo's callback requests: URL query, and for POST the urlencoded body.

Parsed here rather than with Starlette's ``request.form()``, which needs the optional
``python-multipart`` package and, without it, fails on every POST: the callbacks then lost their
parameters. Plivo posts small ``application/x-www-form-urlencoded`` bodies; anything else, or a
body past ``MAX_FORM_BYTES``, is refused rather than buffered.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import Request

MAX_FORM_BYTES = 64 * 1024
_FORM_TYPES = ("application/x-www-form-urlencoded", "")


class FormError(ValueError):
    """A body that is not a small urlencoded form."""


async def form_fields(request: Request) -> dict[str, list[str]]:
    """The POST body's fields, each with every value in order; {} for other methods.

    Read once per request (kept on ``request.state``), so a check and the route can both ask.
    """
    cached: dict[str, list[str]] | None = getattr(request.state, "form_fields", None)
    if cached is not None:
        return cached
    fields: dict[str, list[str]] = {}
    if request.method == "POST":
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise FormError(f"body larger than {MAX_FORM_BYTES} bytes")
        if body:
            if content_type not in _FORM_TYPES:
                raise FormError(f"content-type {content_type!r}: expected a urlencoded form")
            try:
                fields = parse_qs(body.decode("utf-8"), keep_blank_values=True)
            except (UnicodeDecodeError, ValueError) as exc:
                raise FormError(f"unreadable form: {exc}") from None
    request.state.form_fields = fields
    return fields


async def callback_params(request: Request) -> dict[str, str]:
    """Query and body parameters, one value each (the body's wins); never raises for bad input,
    because a route that logs a status callback must not fail on a malformed one."""
    params: dict[str, str] = dict(request.query_params)
    try:
        fields = await form_fields(request)
    except FormError:
        return params
    params.update({key: values[0] for key, values in fields.items() if values})
    return params
