"""Sans-I/O Plivo audio stream protocol: parse what Plivo sends, build what we send.

No sockets and no asyncio here, so the transport, the simulator and the tests share one
implementation of the wire format.
"""

from .answer_xml import dial_xml, hangup_xml, stream_xml
from .errors import (
    InvalidField,
    MalformedMessage,
    MissingField,
    ProtocolError,
    UnsupportedFormat,
)
from .events import (
    ClearedAudioEvent,
    DtmfEvent,
    ErrorEvent,
    InboundEvent,
    MediaEvent,
    PlayedStreamEvent,
    PlayFailedEvent,
    StartEvent,
    StopEvent,
    UnknownEvent,
    parse_event,
    parse_extra_headers,
)
from .formats import L16_8K, L16_16K, MULAW_8K, SUPPORTED_FORMATS, StreamFormat
from .messages import PlayAudioEncoder, checkpoint, clear_audio, play_audio, send_dtmf
from .signature import compute_v3_signature, v3_signature_base, validate_v3_signature

__all__ = [
    "L16_8K",
    "L16_16K",
    "MULAW_8K",
    "SUPPORTED_FORMATS",
    "ClearedAudioEvent",
    "DtmfEvent",
    "ErrorEvent",
    "InboundEvent",
    "InvalidField",
    "MalformedMessage",
    "MediaEvent",
    "MissingField",
    "PlayAudioEncoder",
    "PlayFailedEvent",
    "PlayedStreamEvent",
    "ProtocolError",
    "StartEvent",
    "StopEvent",
    "StreamFormat",
    "UnknownEvent",
    "UnsupportedFormat",
    "checkpoint",
    "clear_audio",
    "compute_v3_signature",
    "dial_xml",
    "hangup_xml",
    "parse_event",
    "parse_extra_headers",
    "play_audio",
    "send_dtmf",
    "stream_xml",
    "v3_signature_base",
    "validate_v3_signature",
]
