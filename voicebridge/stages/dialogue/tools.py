"""Tools an LLM dialogue may call: user functions declared in YAML, plus hang-up and transfer.

A user tool is declared in the pipeline file, next to the stage that offers it::

    tools:
      - name: order_status
        description: Look up where a customer's order is.
        parameters:
          type: object
          properties: {order_number: {type: string}}
          required: [order_number]
        function: mybakery.tools:order_status

``function`` is any sync or async callable ``fn(arguments, context)``: ``arguments`` is the
model's parsed JSON arguments, ``context`` a :class:`ToolContext` (call info, what was said so
far, per-call state). It returns a string, or a dict/list that is sent as JSON; what it returns
is given back to the model, which then writes the reply the caller hears. The callable is
imported when the pipeline file is loaded, so a typo fails at start-up, not mid-call.

Sync functions run in the process-wide ``llm-tools`` worker pool, never on the event loop; a
barge-in cancels an async tool at once, while a sync one already running finishes in its thread
and its result is dropped.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from voicebridge.call.context import CallInfo, HistoryEntry
from voicebridge.clock import Clock, wait_for
from voicebridge.runtime.workers import run_blocking

HANG_UP = "hang_up"
TRANSFER = "transfer_call"
BUILTIN_TOOLS = frozenset({HANG_UP, TRANSFER})

POOL_NAME = "llm-tools"
_POOL_WORKERS = 8
_POOL_QUEUE = 64
_MAX_RESULT_CHARS = 16_000  # a tool answer larger than this is cut before it reaches the model

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ToolSpec(BaseModel):
    """One user-defined tool, as written in the pipeline YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="the name the model calls (letters, digits, _ and -)")
    description: str = Field("", description="when the model should use it")
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON schema of the arguments",
    )
    function: str = Field(description="'package.module:callable' called as fn(arguments, ctx)")
    timeout_s: float = Field(10.0, gt=0, le=300, description="give up on the tool after this")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("tool names are 1-64 letters, digits, '_' or '-'")
        if value in BUILTIN_TOOLS:
            raise ValueError(f"{value!r} is a built-in tool; choose another name")
        return value

    @field_validator("parameters")
    @classmethod
    def _check_parameters(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("type", "object") != "object":
            raise ValueError("a tool's parameters must be a JSON schema of type 'object'")
        return {"type": "object", **value}

    @field_validator("function")
    @classmethod
    def _check_function(cls, value: str) -> str:
        resolve_callable(value)  # fail at load time, with the file's line, not mid-call
        return value

    def tool_schema(self) -> dict[str, Any]:
        """The tool as the chat completions API wants it."""
        return _function_schema(self.name, self.description, self.parameters)


def resolve_callable(target: str) -> Callable[..., Any]:
    """Import ``package.module:attr.path`` and check that it is callable."""
    module_name, sep, attr_path = target.partition(":")
    if not sep or not module_name or not attr_path:
        raise ValueError(f"expected 'package.module:callable', got {target!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module {module_name!r}: {exc}") from exc
    for attr in attr_path.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise ValueError(f"module {module_name!r} has no attribute {attr_path!r}") from None
    if not callable(obj):
        raise ValueError(f"{target!r} is not callable")
    return obj


@dataclass(frozen=True)
class ToolContext:
    """What a tool knows about the call it serves."""

    info: CallInfo
    history: list[HistoryEntry]  # a copy: what was said so far, agent turns as heard
    state: dict[str, Any] = field(default_factory=dict)  # the call's shared scratch space
    log: Any = None

    @property
    def call_id(self) -> str:
        return self.info.call_id


@dataclass(frozen=True)
class ToolCall:
    """A tool call the model asked for, assembled from the streamed deltas."""

    id: str
    name: str
    arguments: str  # raw JSON text, as streamed

    def parsed(self) -> dict[str, Any]:
        """The arguments as a dict; raises ValueError for anything but a JSON object."""
        text = self.arguments.strip() or "{}"
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError("tool arguments must be a JSON object")
        return value

    def message(self) -> dict[str, Any]:
        """This call inside the assistant message that is sent back with the tool's result."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments or "{}"},
        }


def _function_schema(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name, "parameters": parameters}
    if description:
        function["description"] = description
    return {"type": "function", "function": function}


def hang_up_schema() -> dict[str, Any]:
    return _function_schema(
        HANG_UP,
        "End the phone call. Use it when the caller says goodbye or the conversation is over. "
        "Put your last words to the caller in 'goodbye'.",
        {
            "type": "object",
            "properties": {
                "goodbye": {
                    "type": "string",
                    "description": "what to say to the caller before hanging up",
                }
            },
        },
    )


def transfer_schema(targets: dict[str, str]) -> dict[str, Any]:
    names = sorted(targets)
    return _function_schema(
        TRANSFER,
        "Transfer the caller to a person or department. Only these targets exist: "
        + ", ".join(names)
        + ". Tell the caller what is happening in 'message'.",
        {
            "type": "object",
            "properties": {
                "to": {"type": "string", "enum": names, "description": "who to transfer to"},
                "message": {
                    "type": "string",
                    "description": "what to say to the caller before the transfer",
                },
            },
            "required": ["to"],
        },
    )


def result_text(value: Any) -> str:
    """A tool's return value as the text the model is given."""
    if value is None:
        text = "done"
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    return text[:_MAX_RESULT_CHARS]


async def run_tool(
    fn: Callable[..., Any],
    arguments: dict[str, Any],
    context: ToolContext,
    timeout_s: float,
    *,
    clock: Clock,
) -> str:
    """Call a user tool (sync in the worker pool, async on the loop), bounded by ``timeout_s``
    of the call's ``clock``.

    Failures are the tool's, not the provider's: they come back as the text the model is told
    ("error: ..."), so it can apologise or try something else, and the call goes on.
    """
    try:
        if inspect.iscoroutinefunction(fn):
            value = await wait_for(clock, fn(arguments, context), timeout_s)
        else:
            value = await wait_for(
                clock,
                run_blocking(
                    POOL_NAME,
                    fn,
                    arguments,
                    context,
                    max_workers=_POOL_WORKERS,
                    max_queue=_POOL_QUEUE,
                ),
                timeout_s,
            )
            if inspect.isawaitable(value):  # a sync function that returned a coroutine
                value = await wait_for(clock, value, timeout_s)
    except TimeoutError:
        return f"error: the tool did not answer within {timeout_s:g} s"
    except Exception as exc:  # the tool is user code: report, never crash the call
        if context.log is not None:
            context.log.warning("llm_tool_failed", error=repr(exc)[:300])
        return f"error: {type(exc).__name__}: {exc}"[:_MAX_RESULT_CHARS]
    return result_text(value)
