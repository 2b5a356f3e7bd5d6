"""The emulator's SQLite store and the metadata of Web API tables kept in it.

One SQLite database holds every service's state. A Web API table is described by an :class:`Entity`: table and
column names are the service's logical names; lookup columns are stored under their logical name and read as
``_<name>_value`` (OData lookup property convention, [WEBAPI-CREATE], domain-spec §4.3).

The connection is opened in autocommit mode (``isolation_level=None``); a handler that writes several rows wraps
them in :func:`transaction` so a failure leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

STR, INT, GUID, MEMO = "str", "int", "guid", "memo"


@dataclass(frozen=True)
class Lookup:
    """A single-valued navigation property: stored in ``column``, points at ``target`` (an entity set)."""

    column: str
    target: str


@dataclass(frozen=True)
class Entity:
    """Web API metadata of one table.

    Attributes:
        entity_set: collection name in URLs (``pluginassemblies``).
        logical: logical name (``pluginassembly``), also the SQLite table name.
        pk: primary key column.
        columns: writable column -> type (``str``/``int``/``guid``/``memo``).
        read_only: columns returned by reads but ignored on write.
        lookups: navigation property name -> :class:`Lookup`.
        not_updatable: columns valid on create but refused on update (``IsValidForUpdate`` false).
        max_length: string column -> MaxLength from the entity reference.
    """

    entity_set: str
    logical: str
    pk: str
    columns: dict[str, str]
    read_only: dict[str, str] = field(default_factory=dict)
    lookups: dict[str, Lookup] = field(default_factory=dict)
    not_updatable: frozenset[str] = frozenset()
    max_length: dict[str, int] = field(default_factory=dict)

    def all_columns(self) -> dict[str, str]:
        """Every stored column (pk, writable, read-only, lookup columns) -> type."""
        out = {self.pk: GUID, **self.columns, **self.read_only}
        for lk in self.lookups.values():
            out[lk.column] = GUID
        return out

    def readable(self) -> list[str]:
        """Property names a GET returns (lookups as ``_x_value``)."""
        names = [self.pk, *self.columns, *self.read_only]
        names += [f"_{lk.column}_value" for lk in self.lookups.values()]
        return names


def _sql_type(t: str) -> str:
    return "INTEGER" if t == INT else "TEXT"


def create_tables(db: sqlite3.Connection, entities: Iterable[Entity]) -> None:
    """Create one table per entity (named by its logical name, columns from :meth:`Entity.all_columns`;
    idempotent)."""
    for ent in entities:
        cols = ", ".join(f"{name} {_sql_type(t)}" + (" PRIMARY KEY" if name == ent.pk else "")
                         for name, t in ent.all_columns().items())
        db.execute(f"CREATE TABLE IF NOT EXISTS {ent.logical} ({cols})")


def connect(path: str | None) -> sqlite3.Connection:
    """Open the emulator database (``:memory:`` when ``path`` is None) in autocommit mode, usable from the
    server's worker threads (serialise access with the state lock)."""
    db = sqlite3.connect(path or ":memory:", check_same_thread=False, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA foreign_keys = OFF")
    if path:
        db.execute("PRAGMA journal_mode = WAL")
    return db


@contextlib.contextmanager
def transaction(db: sqlite3.Connection, lock: threading.RLock) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` under ``lock``; ``ROLLBACK`` on any exception."""
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def clear(db: sqlite3.Connection, lock: threading.RLock) -> None:
    """Delete every row of every table (the emulator's and any other module's), keeping the schema."""
    with lock:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                          "AND name NOT LIKE 'sqlite_%'")]
        db.execute("BEGIN IMMEDIATE")
        try:
            for n in names:
                db.execute(f'DELETE FROM "{n}"')
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
