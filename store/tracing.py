"""Trace context that crosses the outbox, and the few trace facts the rest of the code
gives. Plain hooks: OpenTelemetry is wired in by webapp/telemetry.py only when an
OTEL_* variable asks for it; until then every call here is one global read.

- `capture()`: the current span's W3C `traceparent` (and `tracestate`), stored on an
  outbox row in the same transaction as the work it asks for;
- `publishing(carrier, task)`: around the publish of that row, whenever and by
  whomever (the after-commit publisher, or the relay minutes later), the stored
  context made current under a producer span; yields the headers for the message;
- `annotate(**facts)`: ids on the current span (source, event, document, import, job);
- `log_ids()`: the current trace and span ids, for log lines.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, Mapping


class _Hooks:
    capture: Callable[[], dict[str, str] | None] | None = None
    publishing: Callable[[Mapping[str, str], str], ContextManager[dict[str, str]]] | None = None
    annotate: Callable[[dict[str, Any]], None] | None = None
    log_ids: Callable[[], tuple[str, str] | None] | None = None


HOOKS = _Hooks()


def capture() -> dict[str, str] | None:
    return HOOKS.capture() if HOOKS.capture else None


def publishing(carrier: Mapping[str, str] | None, task: str) -> ContextManager[dict[str, str]]:
    if HOOKS.publishing is None:
        return contextlib.nullcontext({})
    return HOOKS.publishing(carrier or {}, task)


def annotate(**facts: Any) -> None:
    if HOOKS.annotate is not None:
        HOOKS.annotate(facts)


def log_ids() -> tuple[str, str] | None:
    return HOOKS.log_ids() if HOOKS.log_ids else None
