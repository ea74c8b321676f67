"""The tools a model-driven agent may call, and what each call becomes.

One definition for the ``llm`` stage and the speech-to-speech stages (``openai_realtime``,
``gemini_live``): the parameters that declare the tools (user functions from YAML, see
:mod:`voicebridge.stages.dialogue.tools`, plus the built-ins ``hang_up`` and ``transfer_call``)
and the keypad, and a :class:`Toolbox` that turns a model's call into what the call does. A
built-in call that can be carried out becomes a ``CallAction`` (the ``Hangup`` or ``Transfer``
frame, and the line to say first when the model said nothing); anything else is answered with
text the model is given back (a user tool's result, or why the call could not be done).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator, model_validator

from voicebridge.call.context import CallContext
from voicebridge.frames import Hangup, Transfer
from voicebridge.runtime.stage import StageParams
from voicebridge.stages.dialogue.tools import (
    HANG_UP,
    TRANSFER,
    ToolCall,
    ToolContext,
    ToolSpec,
    hang_up_schema,
    resolve_callable,
    run_tool,
    transfer_schema,
)


class ToolParams(StageParams):
    """What an agent may do on the call besides talk (tools, hang-up, transfer), and how the
    caller's keypad reaches it."""

    tools: list[ToolSpec] = Field(default_factory=list, description="user-defined tools")
    hang_up: bool = Field(True, description="offer the built-in hang_up tool")
    hang_up_text: str = Field("Goodbye.", description="said on hang_up if the model said nothing")
    transfer_targets: dict[str, str] = Field(
        default_factory=dict,
        description="name -> number or SIP URI; offers transfer_call restricted to these",
    )
    transfer_text: str = Field(
        "Please hold while I transfer you.",
        description="said on transfer_call if the model said nothing",
    )
    max_tool_rounds: int = Field(
        3, ge=1, le=10, description="tool rounds per caller turn before the model must speak"
    )
    dtmf: bool = Field(True, description="pass keypad digits to the model as '[keypad: 5]'")
    dtmf_wait_s: float = Field(
        1.0, ge=0, le=10, description="wait this long for more digits before replying ('#' ends)"
    )

    @field_validator("transfer_targets")
    @classmethod
    def _targets(cls, value: dict[str, str]) -> dict[str, str]:
        for name, number in value.items():
            if not name.strip() or not str(number).strip():
                raise ValueError("transfer targets need a name and a number or SIP URI")
        return value

    @model_validator(mode="after")
    def _unique_tools(self) -> Any:
        names = [tool.name for tool in self.tools]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"tool names must be unique: {', '.join(duplicates)}")
        return self


@dataclass(frozen=True, slots=True)
class CallAction:
    """A hang-up or transfer the model asked for; ``closing`` is said first if it said nothing;
    ``target`` names the transfer target (empty for a hang-up)."""

    frame: Hangup | Transfer
    closing: str
    target: str = ""


class Toolbox:
    """One stage's tools: their declarations, and what the model's calls of them do."""

    def __init__(self, params: ToolParams, reason: str, event: str = "s2s_tool_called") -> None:
        self.params = params
        self.reason = reason  # "openai_realtime": the Hangup/Transfer reason names the stage
        self.event = event  # the log event of a user tool's run
        self._functions: dict[str, tuple[Callable[..., Any], float]] = {
            tool.name: (resolve_callable(tool.function), tool.timeout_s) for tool in params.tools
        }
        schemas = [tool.tool_schema() for tool in params.tools]
        if params.hang_up:
            schemas.append(hang_up_schema())
        if params.transfer_targets:
            schemas.append(transfer_schema(params.transfer_targets))
        self.schemas: list[dict[str, Any]] = schemas  # chat-completions form

    def functions(self) -> list[dict[str, Any]]:
        """The declarations as plain functions: name, description, JSON-schema parameters."""
        return [dict(schema["function"]) for schema in self.schemas]

    def action(self, call: ToolCall, said: bool) -> CallAction | None:
        """The hang-up or transfer ``call`` asks for, if it can be done; ``said``: the model
        already spoke in this reply, so nothing more is said before acting."""
        p = self.params
        try:
            arguments = call.parsed()
        except ValueError:
            arguments = {}
        if call.name == HANG_UP and p.hang_up:
            closing = "" if said else str(arguments.get("goodbye") or p.hang_up_text)
            return CallAction(Hangup(reason=self.reason), closing)
        if call.name == TRANSFER and p.transfer_targets:
            target = str(arguments.get("to", ""))
            number = p.transfer_targets.get(target)
            if number is not None:
                closing = "" if said else str(arguments.get("message") or p.transfer_text)
                frame = Transfer(to=number, reason=f"{self.reason}:{target}")
                return CallAction(frame, closing, target)
        return None

    async def answer(self, call: ToolCall, ctx: CallContext, log: Any) -> str:
        """What the model is told back for ``call`` (a user tool's result, or an error)."""
        p = self.params
        if call.name == TRANSFER:
            names = ", ".join(sorted(p.transfer_targets)) or "none"
            return f"error: unknown transfer target; the targets are: {names}"
        if call.name == HANG_UP:
            return "error: hang_up is not available"
        found = self._functions.get(call.name)
        if found is None:
            return f"error: there is no tool named {call.name[:64]!r}"
        fn, timeout_s = found
        try:
            arguments = call.parsed()
        except ValueError as exc:
            return f"error: the arguments are not a JSON object ({exc})"
        context = ToolContext(
            info=ctx.info,
            history=list(ctx.history),
            state=ctx.state,
            log=log.bind(tool=call.name[:64]),
        )
        began = time.perf_counter()
        answer = await run_tool(fn, arguments, context, timeout_s, clock=ctx.clock)
        ms = round(1000 * (time.perf_counter() - began))
        log.info(self.event, tool=call.name[:64], ms=ms)
        return answer
