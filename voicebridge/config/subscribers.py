"""Event subscribers named in a pipeline file: a user's own code that watches every call.

::

    subscribers:
      - type: my_package.audit:AuditTrail     # any importable ``module:Class``
        params: {path: /var/log/calls}

The class gets one instance per call and receives the call's ``CallEvent``s through
``on_event(event)`` (see ``voicebridge.call.events``); an optional ``async def close(self)``
runs after the call's last event. Parameters are checked at load: against the class's own
pydantic ``Params`` model when it has one (then the instance is made as ``Class(params)``),
else against its constructor's signature (``Class(**params)``).
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError


class SubscriberError(ValueError):
    """A ``subscribers:`` entry that cannot be used; the message says why."""


@dataclass
class SubscriberSpec:
    type: str
    cls: Any  # the subscriber class
    params: Any = field(default_factory=dict)
    line: int | None = None

    def create(self) -> Any:
        if isinstance(self.params, BaseModel):
            return self.cls(self.params)
        return self.cls(**self.params)


def resolve_subscriber(target: str) -> type[Any]:
    """Import ``module:Class`` and check it can take events."""
    module_name, _, attr_path = target.partition(":")
    if not module_name or not attr_path:
        raise SubscriberError(f"expected 'package.module:Class', got {target!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise SubscriberError(
            f"cannot import module {module_name!r}: {exc} (the module must be importable: "
            "installed, or on PYTHONPATH)"
        ) from exc
    for attr in attr_path.split("."):
        if not hasattr(obj, attr):
            raise SubscriberError(f"module {module_name!r} has no attribute {attr_path!r}")
        obj = getattr(obj, attr)
    if not isinstance(obj, type) or not callable(getattr(obj, "on_event", None)):
        raise SubscriberError(f"{target!r} is not a class with an on_event(event) method")
    return obj


def check_params(cls: type[Any], raw: dict[str, Any]) -> Any:
    """The parameters as the class will get them; SubscriberError names the problem."""
    model = getattr(cls, "Params", None)
    if isinstance(model, type) and issubclass(model, BaseModel):
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise SubscriberError(f"bad params: {problems}") from None
    try:
        inspect.signature(cls).bind(**raw)
    except TypeError as exc:
        raise SubscriberError(f"bad params for {cls.__name__}: {exc}") from None
    return dict(raw)
