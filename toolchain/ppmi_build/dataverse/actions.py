"""What a Dataverse (or Entra) step did: the ``actions`` of ``register``, ``bind``, ``release``, ``rotate``.

DESIGN.md §3: each action is ``{kind, target, status, id, detail}`` with ``status`` one of ``created``,
``updated``, ``unchanged``, ``planned``, ``failed`` (the pipeline commands add ``deleted`` and ``rolled-back``);
a command's JSON document is ``{"actions": [...], "ids": {...}}`` where ``ids`` maps a row kind
(``pluginpackage``, ``pluginassembly``, ``managedidentity``, …) to the id of the row touched (a list when several
rows of that kind were touched).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STATUSES = ("created", "updated", "unchanged", "planned", "failed", "deleted", "rolled-back")
#: width of the status column in :meth:`Action.line` (the longest status, ``rolled-back``), so lines align
STATUS_WIDTH = max(len(s) for s in STATUSES)


@dataclass
class Action:
    """One thing done (or planned, or found unchanged) to one row.

    Attributes:
        kind: what was acted on: a table logical name (``pluginassembly``, ``pluginpackage``,
            ``managedidentity``, ``plugintype``), ``binding`` (the ``managedidentityid`` lookup of a component),
            ``fic`` (a federated identity credential), …
        target: human name of the row (``Contoso.Plugins``, ``pluginpackage contoso_Plugins``).
        status: one of :data:`STATUSES`.
        id: the row id (GUID) when known.
        detail: one short sentence (what changed, why it failed).
    """

    kind: str
    target: str
    status: str
    id: str | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"action status {self.status!r} is not one of {STATUSES}")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "status": self.status, "id": self.id,
                "detail": self.detail}

    def line(self) -> str:
        """``created      pluginpackage contoso_Plugins (8c1…) - version 1.0.0`` (status column
        :data:`STATUS_WIDTH` wide)."""
        ident = f" ({self.id})" if self.id else ""
        detail = f" - {self.detail}" if self.detail else ""
        return f"{self.status:<{STATUS_WIDTH}} {self.kind} {self.target}{ident}{detail}"


@dataclass
class ActionLog:
    """An ordered list of :class:`Action` plus the ids of the rows touched."""

    actions: list[Action] = field(default_factory=list)
    ids: dict[str, Any] = field(default_factory=dict)

    def add(self, kind: str, target: str, status: str, id: str | None = None, detail: str = "",
            *, record_id: bool = True) -> Action:
        """Append an action (and remember ``id`` under ``ids[kind]`` unless ``record_id`` is False)."""
        act = Action(kind, target, status, id, detail)
        self.actions.append(act)
        if id and record_id:
            self.note_id(kind, id)
        return act

    def note_id(self, kind: str, id: str) -> None:
        cur = self.ids.get(kind)
        if cur is None:
            self.ids[kind] = id
        elif isinstance(cur, list):
            if id not in cur:
                cur.append(id)
        elif cur != id:
            self.ids[kind] = [cur, id]

    def extend(self, other: ActionLog) -> None:
        self.actions.extend(other.actions)
        for k, v in other.ids.items():
            for i in v if isinstance(v, list) else [v]:
                self.note_id(k, i)

    @property
    def failed(self) -> list[Action]:
        return [a for a in self.actions if a.status == "failed"]

    @property
    def changed(self) -> bool:
        """True when any action created, updated, deleted or rolled back something."""
        return any(a.status in ("created", "updated", "deleted", "rolled-back") for a in self.actions)

    def to_json(self) -> dict[str, Any]:
        return {"actions": [a.to_json() for a in self.actions], "ids": dict(self.ids)}

    @property
    def planned(self) -> list[Action]:
        return [a for a in self.actions if a.status == "planned"]

    def lines(self) -> str:
        """Readable lines, one per action, plus a summary line: ``plan: N change(s); nothing was written`` when
        changes are planned (``--plan``), ``nothing to change: …`` only when every action is ``unchanged``."""
        out = [a.line() for a in self.actions]
        planned = len(self.planned)
        if planned and not self.failed:
            out.append(f"plan: {planned} {'change' if planned == 1 else 'changes'}; nothing was written")
        elif self.actions and all(a.status == "unchanged" for a in self.actions):
            out.append("nothing to change: Dataverse already holds this")
        return "\n".join(out)
