"""Plans and action logs for the pipeline commands (``release``, ``rotate``, ``upgrade``).

Every pipeline step records one *action* (DESIGN.md §3): ``{kind, target, status, ...}`` with
``status`` one of ``created`` / ``updated`` / ``unchanged`` / ``planned`` / ``failed``, plus
``deleted`` for a removed FIC and ``rolled-back`` for a step undone after a failure. The
``--json`` document of a pipeline command is :meth:`Plan.to_json`: ``{"command", "environment",
"plan", "actions": [...], "ids": {...}, "notes"?: [...], "next_steps"?: [...], ...}``. Notes (remarks) and next
steps (what the user has to change afterwards, e.g. ``[signing] certificate`` after a rotation) are printed once,
after the actions, in human mode (stdout); never on stderr.

A :class:`Plan` runs in one of two modes:

* ``apply=False`` (``--plan``): steps only read; each would-be change is recorded as ``planned``;
* ``apply=True``: steps change things and record what happened.

:meth:`Plan.step` wraps a step: it prints a progress line on stderr, and when the step raises it
records a ``failed`` action (with the one-line error) before the exception propagates, so the JSON
document always shows how far a run got.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import PpmiError

CREATED = "created"
UPDATED = "updated"
UNCHANGED = "unchanged"
PLANNED = "planned"
FAILED = "failed"
DELETED = "deleted"
ROLLED_BACK = "rolled-back"
STATUSES = (CREATED, UPDATED, UNCHANGED, PLANNED, FAILED, DELETED, ROLLED_BACK)
#: statuses that mean "this run changed something"
CHANGES = (CREATED, UPDATED, DELETED, ROLLED_BACK)
#: width of the status column in the human output (the longest status, ``rolled-back``)
STATUS_WIDTH = max(len(s) for s in STATUSES)


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 attempt`` / ``2 attempts``: ``n`` and the singular or plural of ``word``."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


def action_dict(action: Any) -> dict[str, Any]:
    """Normalise an action from another module (an object with ``to_json()``, a dataclass or a dict)
    into the JSON shape ``{kind, target, status, ...}``."""
    if isinstance(action, dict):
        d = dict(action)
    elif hasattr(action, "to_json"):
        d = dict(action.to_json())
    elif dataclasses.is_dataclass(action):
        d = dataclasses.asdict(action)  # type: ignore[arg-type]
    else:
        d = {k: getattr(action, k) for k in ("kind", "target", "status", "id", "detail") if hasattr(action, k)}
    for key in ("kind", "target", "status"):
        d.setdefault(key, None)
    return {k: v for k, v in d.items() if v is not None or k in ("kind", "target", "status")}


class Plan:
    """Collects the actions of one pipeline run.

    Args:
        command: ``"release"``, ``"rotate"`` or ``"upgrade"``.
        environment: the environment name (``--env``).
        apply: False for ``--plan`` (read-only).
        progress: called with one line per step (the CLI passes a stderr printer).
    """

    def __init__(self, command: str, environment: str | None, *, apply: bool,
                 progress: Callable[[str], None] | None = None):
        self.command = command
        self.environment = environment
        self.apply = apply
        self.actions: list[dict[str, Any]] = []
        self.ids: dict[str, Any] = {}
        self.notes: list[str] = []
        #: things the user has to do after this run (JSON ``next_steps``; printed after the notes)
        self.next_steps: list[str] = []
        self.extra: dict[str, Any] = {}
        self._progress = progress or (lambda _msg: None)
        self._step_no = 0

    # -- recording -------------------------------------------------------------------------------

    def add(self, kind: str, target: str, status: str, **detail: Any) -> dict[str, Any]:
        """Record one action. ``status`` must be one of :data:`STATUSES`. ``None`` details are dropped."""
        if status not in STATUSES:
            raise ValueError(f"unknown action status {status!r}")
        a = {"kind": kind, "target": target, "status": status}
        a.update({k: v for k, v in detail.items() if v is not None})
        self.actions.append(a)
        return a

    def would(self, kind: str, target: str, done_status: str = CREATED, **detail: Any) -> dict[str, Any]:
        """Record a change: ``planned`` in plan mode, ``done_status`` otherwise."""
        return self.add(kind, target, done_status if self.apply else PLANNED, **detail)

    def extend(self, actions: Any) -> None:
        """Add actions returned by another module (see :func:`action_dict`)."""
        for a in actions or ():
            d = action_dict(a)
            if not self.apply and d.get("status") in CHANGES:
                d["status"] = PLANNED
            self.actions.append(d)

    def note(self, text: str) -> None:
        """A human remark shown once after the actions (human output on stdout), or in JSON ``notes``."""
        if text not in self.notes:
            self.notes.append(text)

    def next_step(self, text: str) -> None:
        """Something the user must do after this run (JSON ``next_steps``; human output: ``next step:`` lines)."""
        if text not in self.next_steps:
            self.next_steps.append(text)

    def set_id(self, key: str, value: Any) -> None:
        if value is not None:
            self.ids[key] = str(value)

    # -- steps -----------------------------------------------------------------------------------

    def progress(self, message: str) -> None:
        self._progress(message)

    @contextlib.contextmanager
    def step(self, kind: str, target: str, message: str | None = None) -> Iterator[None]:
        """Announce a step on stderr; on an exception record ``{kind, target, status: failed, error}``."""
        self._step_no += 1
        prefix = "plan" if not self.apply else self.command
        self._progress(f"[{prefix} {self._step_no}] {message or f'{kind}: {target}'}")
        try:
            yield
        except PpmiError as e:
            self.add(kind, target, FAILED, error=e.message)
            raise
        except Exception as e:  # noqa: BLE001 - record, then let it propagate unchanged
            self.add(kind, target, FAILED, error=f"{type(e).__name__}: {e}")
            raise

    # -- results ---------------------------------------------------------------------------------

    @property
    def changed(self) -> bool:
        """True when an action changed something (never in plan mode)."""
        return any(a.get("status") in CHANGES for a in self.actions)

    @property
    def failed(self) -> bool:
        return any(a.get("status") == FAILED for a in self.actions)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "command": self.command,
            "environment": self.environment,
            "plan": not self.apply,
            "changed": self.changed,
            "actions": list(self.actions),
            "ids": dict(self.ids),
        }
        if self.notes:
            out["notes"] = list(self.notes)
        if self.next_steps:
            out["next_steps"] = list(self.next_steps)
        out.update(self.extra)
        return out

    def human(self) -> str:
        """Text for the terminal: one line per action, then notes."""
        width = max((len(str(a.get("kind"))) for a in self.actions), default=4)
        lines = []
        head = "Plan" if not self.apply else self.command.capitalize()
        lines.append(f"{head} for environment {self.environment}:" if self.environment else f"{head}:")
        for a in self.actions:
            line = f"  {str(a.get('status')).ljust(STATUS_WIDTH)}  {str(a.get('kind')).ljust(width)}  {a.get('target')}"
            if a.get("error"):
                line += f"  ({a['error']})"
            elif a.get("detail"):
                line += f"  ({a['detail']})"
            lines.append(line)
        for n in self.notes:
            lines.append(f"note: {n}")
        for step in self.next_steps:
            lines.append(f"next step: {step}")
        if not self.apply:
            lines.append("Nothing was changed (--plan).")
        elif not self.changed and not self.failed:
            lines.append("Everything was already up to date.")
        return "\n".join(lines)
