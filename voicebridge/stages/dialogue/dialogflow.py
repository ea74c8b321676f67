"""The ``dialogflow`` stage: a Google Dialogflow agent (CX by default, or ES) runs the dialogue.

One ``DetectIntent`` per final transcript, on a session named after the call, so the agent's
flows, pages, forms and webhooks drive the conversation. Dialogflow keeps its own session state,
so the call's history (``ctx.history``) is not sent: what the caller actually heard is still
recorded by the session for logs and reports, but the agent believes it said its whole reply even
when the caller cut it off.

What comes back becomes one agent turn: its text messages, split into sentences, as
``AgentText`` pieces; then the agent's call actions: CX ``end_interaction`` (ES: the intent's
"end of conversation") hangs up once the reply has played, ``live_agent_handoff`` transfers to
``handoff_to``, and a CX ``telephony_transfer_call`` transfers to its own number.

At call start the conversation is opened with ``welcome`` (CX: the Default Welcome Intent; ES:
the ``WELCOME`` event), and the call's extra SIP headers become session parameters (CX) or the
``voicebridge-call`` context and the request payload (ES), so flows can branch on them.

Keypad digits are collected until ``dtmf_finish_digit`` or ``dtmf_timeout_ms`` without a new
digit, then sent as one DTMF input (CX) or as text (ES, which has no DTMF input).

``DetectIntent`` is not idempotent (a request that reached the agent moved the session on), so
only UNAVAILABLE, which Google's own client library also retries, is retried, a bounded number of
times; a timeout is reported, not repeated.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from google.cloud import dialogflow_v2 as es
from google.cloud import dialogflowcx_v3 as cx
from google.cloud.dialogflow_v2.services.sessions.transports import (
    SessionsGrpcAsyncIOTransport as EsTransport,
)
from google.cloud.dialogflowcx_v3.services.sessions.transports import (
    SessionsGrpcAsyncIOTransport as CxTransport,
)
from pydantic import Field, field_validator, model_validator

from voicebridge.frames import (
    AgentText,
    AudioIn,
    CallStarted,
    Dtmf,
    Frame,
    Hangup,
    Transcript,
    Transfer,
)
from voicebridge.runtime.resilience import ResilienceParams, stage_guard
from voicebridge.runtime.stage import Stage, StageError, StageParams
from voicebridge.stages.google_common import (
    GoogleParams,
    build_client,
    client_credentials,
    close_client,
    guarded_call,
    resolve_project,
)
from voicebridge.text import split_sentences

_RETRY_ON = frozenset({"unavailable"})
CX_WELCOME_INTENT = "00000000-0000-0000-0000-000000000000"  # CX's Default Welcome Intent
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
_PARAM_KEY = re.compile(r"[^A-Za-z0-9_-]")
_ES_CONTEXT = "voicebridge-call"
_ES_CONTEXT_LIFESPAN = 50
_AGENT_PATH = re.compile(r"^projects/([^/]+)/locations/([^/]+)/agents/([^/]+)$")

Scalar = str | int | float | bool


class DialogflowParams(GoogleParams):
    version: Literal["cx", "es"] = Field("cx", description="Dialogflow CX or ES (v2)")
    location: str = Field("global", description="agent location (regional endpoint if not global)")
    agent: str = Field(
        "", description="CX agent id, or its full path projects/P/locations/L/agents/A"
    )
    environment: str = Field("", description="environment id; empty = the draft agent")
    language: str = Field("en-US", description="language code of the queries")
    welcome: str = Field(
        "default",
        description="opens the call: default (CX welcome intent / ES WELCOME event), "
        "event:NAME, text:WORDS, or none",
    )
    handoff_to: str | None = Field(
        None, description="number or sip: URI a live-agent handoff transfers to"
    )
    header_parameters: bool = Field(
        True, description="pass the call's extra SIP headers to the agent as parameters"
    )
    parameters: dict[str, Scalar] = Field(
        default_factory=dict, description="fixed session parameters sent at call start"
    )
    time_zone: str = Field("", description="IANA time zone of the caller, e.g. Europe/Paris")
    dtmf_finish_digit: str = Field("#", description="key that ends a keypad entry")
    dtmf_timeout_ms: int = Field(
        2000, ge=100, le=30_000, description="keypad entry ends after this long without a key"
    )
    timeout_s: float = Field(10.0, gt=0, le=60, description="deadline of one DetectIntent")
    retries: int = Field(1, ge=0, le=5, description="retries after UNAVAILABLE only")
    resilience: ResilienceParams = Field(
        default_factory=lambda: ResilienceParams(),
        description="first-byte deadline, circuit breaker; retries override retries",
    )

    @field_validator("welcome")
    @classmethod
    def _welcome_form(cls, value: str) -> str:
        value = value.strip()
        if value in ("", "none", "default"):
            return value or "none"
        kind, sep, rest = value.partition(":")
        if not sep or kind not in ("event", "text") or not rest.strip():
            raise ValueError("welcome must be default, none, event:NAME or text:WORDS")
        return value

    @field_validator("dtmf_finish_digit")
    @classmethod
    def _finish_digit(cls, value: str) -> str:
        if value and (len(value) != 1 or value not in "0123456789*#"):
            raise ValueError("dtmf_finish_digit must be one keypad key (0-9, * or #) or empty")
        return value

    @model_validator(mode="after")
    def _agent_for_cx(self) -> DialogflowParams:
        if self.version == "cx" and not self.agent.strip():
            raise ValueError("version cx needs `agent` (the agent id or its full path)")
        return self


@dataclass
class Reply:
    """What one DetectIntent answered, in the terms of a phone call."""

    texts: list[str] = field(default_factory=list)
    end: bool = False
    handoff: bool = False
    transfer_to: str | None = None


def session_id(call_id: str) -> str:
    """Dialogflow session ids are at most 36 characters of [A-Za-z0-9_-]; a call id that is
    not one (or is missing) is hashed into one, stably."""
    if _SESSION_ID.match(call_id):
        return call_id
    return hashlib.sha256(call_id.encode()).hexdigest()[:32]


def cx_reply(response: cx.DetectIntentResponse) -> Reply:
    reply = Reply()
    for message in response.query_result.response_messages:
        kind = cx.ResponseMessage.pb(message).WhichOneof("message")
        if kind == "text":
            text = "".join(message.text.text).strip()
            if text:
                reply.texts.append(text)
        elif kind == "output_audio_text":
            text = message.output_audio_text.ssml or message.output_audio_text.text
            if text.strip():
                reply.texts.append(text.strip())
        elif kind == "end_interaction":
            reply.end = True
        elif kind == "live_agent_handoff":
            reply.handoff = True
        elif kind == "telephony_transfer_call":
            number = message.telephony_transfer_call.phone_number
            if number:
                reply.transfer_to = number
    return reply


def es_reply(response: es.DetectIntentResponse) -> Reply:
    result = response.query_result
    reply = Reply()
    unspecified = es.Intent.Message.Platform.PLATFORM_UNSPECIFIED
    for message in result.fulfillment_messages:
        if message.platform != unspecified:
            continue
        if es.Intent.Message.pb(message).WhichOneof("message") == "text":
            text = " ".join(t.strip() for t in message.text.text if t.strip())
            if text:
                reply.texts.append(text)
    if not reply.texts and result.fulfillment_text.strip():
        reply.texts.append(result.fulfillment_text.strip())
    diagnostic = result.diagnostic_info
    reply.end = bool(result.intent.end_interaction) or bool(
        diagnostic is not None and diagnostic.get("end_conversation")
    )
    reply.handoff = bool(result.intent.live_agent_handoff)
    return reply


class Dialogflow(Stage):
    type_name = "dialogflow"
    role = "dialogue"
    passthrough = (AudioIn,)  # caller audio goes around this stage
    description = "A Google Dialogflow CX (or ES) agent answers each caller utterance."
    Params = DialogflowParams

    def __init__(self, params: StageParams | None = None, /, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        p: DialogflowParams = self.params
        self.guard = stage_guard(
            self.name,
            self.provider,
            f"{p.endpoint or 'dialogflow.googleapis.com'} {p.location} {p.agent}",
            p.resilience,
            retries=p.retries,
            retry_if=lambda error: error.kind in _RETRY_ON,
        )
        self._client: Any = None
        self._session = ""
        self._agent_path = ""
        self._sent_parameters = False
        self._digits = ""
        self._dtmf_wait: asyncio.Task[None] | None = None  # waiting for more digits
        self._dtmf_reply: asyncio.Task[None] | None = None  # answering them
        self._dtmf_turn: int | None = None
        self._lock = asyncio.Lock()

    # --- set-up ---------------------------------------------------------------------------
    @classmethod
    async def preload(cls, params: StageParams) -> None:
        """Resolve credentials and the project at service start: fail before any call."""
        assert isinstance(params, DialogflowParams)
        _credentials, adc_project = await client_credentials(cls.type_name, params)
        if not _AGENT_PATH.match(params.agent.strip()):
            resolve_project(cls.type_name, params.project, adc_project)

    async def start(self) -> None:
        p: DialogflowParams = self.params
        credentials, adc_project = await client_credentials(self.name, p)
        sid = session_id(self.ctx.info.call_id or self.ctx.info.stream_id or uuid.uuid4().hex)
        location = p.location
        if p.version == "cx":
            agent = p.agent.strip()
            match = _AGENT_PATH.match(agent)
            if match:
                location = match.group(2)
            else:
                project = resolve_project(self.name, p.project, adc_project)
                agent = f"projects/{project}/locations/{location}/agents/{agent}"
            self._agent_path = agent
            env = f"/environments/{p.environment}" if p.environment else ""
            self._session = f"{agent}{env}/sessions/{sid}"
            client_cls: Any = cx.SessionsAsyncClient
            transport_cls: Any = CxTransport
        else:
            project = resolve_project(self.name, p.project, adc_project)
            parent = f"projects/{project}"
            if location != "global":
                parent += f"/locations/{location}"
            if p.environment:
                self._session = (
                    f"{parent}/agent/environments/{p.environment}/users/-/sessions/{sid}"
                )
            else:
                self._session = f"{parent}/agent/sessions/{sid}"
            client_cls = es.SessionsAsyncClient
            transport_cls = EsTransport
        endpoint = p.endpoint
        if not endpoint and location != "global":
            endpoint = f"{location}-dialogflow.googleapis.com"
        self._client = build_client(
            client_cls,
            transport_cls,
            endpoint=endpoint,
            insecure=p.insecure,
            credentials=credentials,
        )

    async def stop(self) -> None:
        client, self._client = self._client, None
        await close_client(client)

    @property
    def session_path(self) -> str:
        return self._session

    @property
    def provider(self) -> str:
        return "dialogflow-cx" if self.params.version == "cx" else "dialogflow-es"

    # --- frames ---------------------------------------------------------------------------
    async def process(self, frame: Frame) -> None:
        await self.emit(frame)
        if isinstance(frame, CallStarted):
            query = None if frame.resumed else self._welcome_query()
            if query is not None:
                await self._converse(query, "welcome")
        elif isinstance(frame, Transcript):
            if frame.final and frame.text.strip():
                await self._flush_digits()
                await self._converse(self._text_query(frame.text.strip()), "transcript")
        elif isinstance(frame, Dtmf):
            await self._digit(frame.digit)

    def interrupt(self, stale_through: int) -> None:
        """A reply to keypad input runs outside ``process``: cancel it here when stale."""
        task = self._dtmf_reply
        turn = self._dtmf_turn
        if task is not None and not task.done() and turn is not None and turn <= stale_through:
            task.cancel()

    # --- queries --------------------------------------------------------------------------
    def _welcome_query(self) -> Any:
        p: DialogflowParams = self.params
        welcome = p.welcome
        if welcome == "none":
            return None
        if welcome.startswith("text:"):
            return self._text_query(welcome[5:].strip())
        event = welcome[6:].strip() if welcome.startswith("event:") else ""
        if p.version == "cx":
            if event:
                return cx.QueryInput(event=cx.EventInput(event=event), language_code=p.language)
            intent = f"{self._agent_path}/intents/{CX_WELCOME_INTENT}"
            return cx.QueryInput(intent=cx.IntentInput(intent=intent), language_code=p.language)
        return es.QueryInput(event=es.EventInput(name=event or "WELCOME", language_code=p.language))

    def _text_query(self, text: str) -> Any:
        p: DialogflowParams = self.params
        if p.version == "cx":
            return cx.QueryInput(text=cx.TextInput(text=text), language_code=p.language)
        return es.QueryInput(text=es.TextInput(text=text, language_code=p.language))

    def _dtmf_query(self, digits: str, finished: bool) -> Any:
        p: DialogflowParams = self.params
        if p.version == "cx":
            dtmf = cx.DtmfInput(digits=digits)
            if finished and p.dtmf_finish_digit:
                dtmf.finish_digit = p.dtmf_finish_digit
            return cx.QueryInput(dtmf=dtmf, language_code=p.language)
        return self._text_query(digits)  # ES has no DTMF input: the digits as words

    def _call_parameters(self) -> dict[str, Scalar]:
        p: DialogflowParams = self.params
        values: dict[str, Scalar] = {}
        if p.header_parameters:
            for key, value in self.ctx.info.extra_headers.items():
                name = _PARAM_KEY.sub("_", key.strip())
                if name:
                    values[name] = value
        values.update(p.parameters)
        return values

    def _request(self, query: Any) -> Any:
        p: DialogflowParams = self.params
        first = not self._sent_parameters
        self._sent_parameters = True
        parameters = self._call_parameters()
        if p.version == "cx":
            cx_params = cx.QueryParameters()
            if p.time_zone:
                cx_params.time_zone = p.time_zone
            if first and parameters:
                cx_params.parameters = parameters  # session parameters persist in CX
            return cx.DetectIntentRequest(
                session=self._session, query_input=query, query_params=cx_params
            )
        es_params = es.QueryParameters()
        if p.time_zone:
            es_params.time_zone = p.time_zone
        if parameters:
            es_params.payload = parameters  # webhooks see it on every turn
            if first:
                es_params.contexts = [
                    es.Context(
                        name=f"{self._session}/contexts/{_ES_CONTEXT}",
                        lifespan_count=_ES_CONTEXT_LIFESPAN,
                        parameters=parameters,
                    )
                ]
        return es.DetectIntentRequest(
            session=self._session, query_input=query, query_params=es_params
        )

    async def _detect(self, query: Any) -> Reply:
        p: DialogflowParams = self.params
        if self._client is None:
            raise StageError(f"{self.name}: not started")
        request = self._request(query)

        async def call() -> Any:
            return await self._client.detect_intent(
                request=request, retry=None, timeout=p.timeout_s
            )

        response = await guarded_call(
            call,
            guard=self.guard,
            stage=self.name,
            provider=self.provider,
            clock=self.ctx.clock,
            log=self.log,
        )
        return cx_reply(response) if p.version == "cx" else es_reply(response)

    async def _converse(self, query: Any, why: str, *, in_process: bool = True) -> None:
        """One exchange: ask the agent, speak its reply as one turn, then act on it."""
        async with self._lock:
            started = time.perf_counter()
            # The turn begins before the request, so a barge-in cancels the request too.
            turn = self.begin_turn() if in_process else self.ctx.begin_turn()
            if not in_process:
                self._dtmf_turn = turn
            reply = await self._detect(query)
            pieces = [piece for text in reply.texts for piece in split_sentences(text)]
            if pieces:
                self.log.info(
                    "dialogue_first_text",
                    ms=round(1000 * (time.perf_counter() - started)),
                    turn=turn,
                    why=why,
                    pieces=len(pieces),
                )
            for index, piece in enumerate(pieces):
                await self.emit(AgentText(piece, turn=turn, last=index == len(pieces) - 1))
            if not pieces:
                # Nothing to say: an empty last piece still ends the turn (the speaker plays a
                # moment of silence), so the session does not wait for a reply forever.
                await self.emit(AgentText("", turn=turn, last=True))
            await self._act(reply)

    async def _act(self, reply: Reply) -> None:
        p: DialogflowParams = self.params
        if reply.transfer_to:
            await self.emit(Transfer(to=reply.transfer_to, reason="dialogflow"))
        elif reply.handoff:
            if p.handoff_to:
                await self.emit(Transfer(to=p.handoff_to, reason="live_agent_handoff"))
            else:
                self.log.warning("dialogflow_handoff_ignored", reason="handoff_to is not set")
        elif reply.end:
            await self.emit(Hangup(reason="dialogflow"))

    # --- keypad ---------------------------------------------------------------------------
    async def _digit(self, digit: str) -> None:
        p: DialogflowParams = self.params
        self._cancel_dtmf_wait()
        if p.dtmf_finish_digit and digit == p.dtmf_finish_digit:
            digits, self._digits = self._digits, ""
            await self._converse(self._dtmf_query(digits, True), "dtmf")
            return
        self._digits += digit
        self._dtmf_wait = self.spawn(self._dtmf_timeout(), name=f"{self.name}-dtmf")

    def _cancel_dtmf_wait(self) -> None:
        if self._dtmf_wait is not None:
            self._dtmf_wait.cancel()
            self._dtmf_wait = None

    async def _dtmf_timeout(self) -> None:
        """No key for ``dtmf_timeout_ms``: the entry is complete; send it (in this task)."""
        await self.ctx.clock.sleep(self.params.dtmf_timeout_ms / 1000.0)
        self._dtmf_wait = None  # answering now: a new key no longer cancels this
        self._dtmf_reply = asyncio.current_task()
        digits, self._digits = self._digits, ""
        if not digits:
            return
        try:
            await self._converse(self._dtmf_query(digits, False), "dtmf", in_process=False)
        finally:
            self._dtmf_turn = None
            self._dtmf_reply = None

    async def _flush_digits(self) -> None:
        """Digits typed before speaking are sent first, as their own query."""
        if not self._digits:
            return
        self._cancel_dtmf_wait()
        digits, self._digits = self._digits, ""
        await self._converse(self._dtmf_query(digits, False), "dtmf")
