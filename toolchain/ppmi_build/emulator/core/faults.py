"""Fault injection (DESIGN.md §3 "The emulator"): requests that get an error, a dropped connection or a delay.

A fault (``POST /_emulator/faults``, or :meth:`EmulatorState.add_fault`) is a JSON object (or a list of them)
with the keys

* ``method`` — ``"*"`` or an HTTP method;
* ``path_contains`` — a substring of the URL path (without the query);
* ``status`` — answer with this status and an OData error body (``code``/``message`` override the defaults in
  :data:`FAULT_ERRORS`, which follow domain-spec §4.4–4.5); ``retry_after`` — seconds, sent as ``Retry-After``;
* ``times`` — how many matching requests it applies to (default 1);
* ``drop`` — read part of the request body, then close the connection without an answer: nothing is processed;
* ``delay_s`` — sleep before answering or processing;
* ``drop_after_commit`` — process the request, commit, then close the connection without an answer: the client
  cannot know whether its write happened.

Faults are added and listed through the control surface (:mod:`.control`).
"""

from __future__ import annotations

import threading
from typing import Any

FAULT_KEYS = {"method", "path_contains", "status", "retry_after", "times", "drop", "delay_s", "drop_after_commit",
              "code", "message"}

#: status -> (Dataverse error code, message) used for injected faults ([API-LIMITS], [WEBAPI-ERR])
FAULT_ERRORS = {
    429: ("0x80072322", "Number of requests exceeded the limit of 6000 over time window of 300 seconds."),
    500: ("", "An unexpected error occurred."),
    502: ("", "Bad Gateway"),
    503: ("", "The service is temporarily unavailable. Please retry."),
    504: ("", "Gateway Timeout"),
}


def fault_error(fault: dict[str, Any]) -> tuple[int, str, str, dict[str, str]]:
    """``(status, code, message, extra headers)`` of a status fault."""
    st = int(fault["status"])
    code, msg = FAULT_ERRORS.get(st, ("", f"Injected fault {st}"))
    extra = {"Retry-After": str(fault["retry_after"])} if fault["retry_after"] is not None else {}
    return st, fault["code"] or code, fault["message"] or msg, extra


class FaultQueue:
    """The pending faults of one emulator, in the order they were added (thread-safe under ``lock``)."""

    def __init__(self, lock: threading.RLock):
        self.lock = lock
        self.pending: list[dict[str, Any]] = []

    def add(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Validate ``spec`` (keys of :data:`FAULT_KEYS`), fill defaults, queue it and return it.

        Raises:
            ValueError: unknown keys, ``times`` < 1, or none of status/drop/drop_after_commit/delay_s.
        """
        unknown = set(spec) - FAULT_KEYS
        if unknown:
            raise ValueError(f"unknown fault keys {sorted(unknown)}; known: {sorted(FAULT_KEYS)}")
        fault: dict[str, Any] = {"method": "*", "path_contains": "", "status": None, "retry_after": None, "times": 1,
                                 "drop": False, "delay_s": 0, "drop_after_commit": False, "code": None,
                                 "message": None}
        fault.update(spec)
        fault["method"] = str(fault["method"] or "*").upper()
        fault["times"] = int(fault["times"])
        if fault["times"] < 1:
            raise ValueError("times must be >= 1")
        if fault["status"] is not None:
            fault["status"] = int(fault["status"])
        if not (fault["status"] or fault["drop"] or fault["delay_s"] or fault["drop_after_commit"]):
            raise ValueError("a fault needs status, drop, drop_after_commit or delay_s")
        with self.lock:
            self.pending.append(fault)
        return fault

    def clear(self) -> None:
        with self.lock:
            self.pending.clear()

    def take(self, method: str, path: str) -> dict[str, Any] | None:
        """The first pending fault matching this request (its ``times`` is decremented), or None."""
        with self.lock:
            for f in self.pending:
                if f["method"] in ("*", method) and f["path_contains"] in path:
                    f["times"] -= 1
                    if f["times"] <= 0:
                        self.pending.remove(f)
                    return dict(f)
        return None

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(f) for f in self.pending]
