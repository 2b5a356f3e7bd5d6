"""Federated identity credentials as Entra ID keeps them, and the rules every FIC write follows (domain-spec §1.7,
Entra "federated identity credential considerations"; shapes from the Graph v1.0 ``federatedIdentityCredential``
reference).

One table, ``entra_fic``; ``owner`` is ``app:{objectId}`` (``app:appid:{appId}`` when addressed by appId) for an
app registration or ``uami:{lower-case resource id}`` for a user-assigned managed identity; ``seq`` keeps creation
order.

Rules: at most :data:`FIC_CAP` FICs per owner; (issuer, subject) unique per owner, compared exactly; name 3–120
characters ``^[A-Za-z0-9][A-Za-z0-9_-]{2,119}$`` and immutable; issuer/subject/audience/description at most
:data:`MAX_CHARS` characters, exactly one audience, no ``*`` wildcards, no leading/trailing whitespace in the
issuer; values stored and matched case-sensitively.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import sqlite3
from typing import Any

#: Entra cap per application / UAMI.
FIC_CAP = 20
MAX_CHARS = 600
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,119}$")

#: a stored FIC as read by :func:`rows`: (id, name, issuer, subject, audiences JSON, description)
FicRow = tuple[Any, ...]


def init_db(conn: sqlite3.Connection) -> None:
    """Create the FIC table (idempotent)."""
    conn.execute(
        """CREATE TABLE IF NOT EXISTS entra_fic (
               seq INTEGER PRIMARY KEY AUTOINCREMENT,
               owner TEXT NOT NULL,
               id TEXT NOT NULL,
               name TEXT NOT NULL,
               issuer TEXT NOT NULL,
               subject TEXT NOT NULL,
               audiences TEXT NOT NULL,
               description TEXT,
               created TEXT NOT NULL
           )""")
    conn.execute("CREATE INDEX IF NOT EXISTS entra_fic_owner ON entra_fic(owner)")
    conn.commit()


def rows(conn: sqlite3.Connection, owner: str) -> list[Any]:
    """The owner's FICs in creation order, as :data:`FicRow` tuples."""
    return conn.execute(
        "SELECT id, name, issuer, subject, audiences, description FROM entra_fic WHERE owner = ? ORDER BY seq",
        (owner,)).fetchall()


def row_dict(row: Any) -> dict[str, Any]:
    """A :data:`FicRow` as the Graph ``federatedIdentityCredential`` JSON shape."""
    return {"id": row[0], "name": row[1], "issuer": row[2], "subject": row[3],
            "audiences": json.loads(row[4]), "description": row[5]}


def validate(body: Any, *, need_name: bool) -> str | None:
    """Return an error message, or None when the values follow the Entra rules."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if need_name:
        name = body.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            return (f"Invalid federated identity credential name {name!r}: it must be 3-120 characters, "
                    "alphanumeric, '-' or '_', and start with an alphanumeric character.")
    for key in ("issuer", "subject"):
        value = body.get(key)
        if not isinstance(value, str) or not value:
            return f"Federated Identity Credential must specify 'issuer', 'subject' and 'audience'. Missing {key}."
        if len(value) > MAX_CHARS:
            return f"The {key} is longer than {MAX_CHARS} characters."
        if "*" in value:
            return f"Wildcard characters are not supported in {key}."
    if body["issuer"] != body["issuer"].strip():
        return "The issuer must not have leading or trailing whitespace."
    audiences = body.get("audiences")
    if not isinstance(audiences, list) or len(audiences) != 1 or not isinstance(audiences[0], str) \
            or not audiences[0]:
        return "Federated Identity Credential must specify exactly one audience."
    if len(audiences[0]) > MAX_CHARS or "*" in audiences[0]:
        return f"The audience must be at most {MAX_CHARS} characters without wildcards."
    desc = body.get("description")
    if desc is not None and (not isinstance(desc, str) or len(desc) > MAX_CHARS):
        return f"The description must be a string of at most {MAX_CHARS} characters."
    return None


def insert(db: sqlite3.Connection, owner: str, fid: str, body: dict[str, Any]) -> None:
    """Store a validated FIC ``body`` (name, issuer, subject, audiences, description) under ``owner``."""
    db.execute(
        "INSERT INTO entra_fic (owner, id, name, issuer, subject, audiences, description, created) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (owner, fid, body["name"], body["issuer"], body["subject"], json.dumps(body["audiences"]),
         body.get("description"), _dt.datetime.now(_dt.UTC).isoformat()))
    db.commit()


def update(db: sqlite3.Connection, owner: str, fid: str, values: dict[str, Any]) -> None:
    """Replace issuer, subject, audiences and (when present in ``values``) description of one FIC."""
    if "description" in values:
        db.execute("UPDATE entra_fic SET issuer = ?, subject = ?, audiences = ?, description = ? "
                   "WHERE owner = ? AND id = ?",
                   (values["issuer"], values["subject"], json.dumps(values["audiences"]), values.get("description"),
                    owner, fid))
    else:
        db.execute("UPDATE entra_fic SET issuer = ?, subject = ?, audiences = ? WHERE owner = ? AND id = ?",
                   (values["issuer"], values["subject"], json.dumps(values["audiences"]), owner, fid))
    db.commit()


def delete(db: sqlite3.Connection, owner: str, fid: str) -> None:
    """Remove one FIC."""
    db.execute("DELETE FROM entra_fic WHERE owner = ? AND id = ?", (owner, fid))
    db.commit()


def load_body(body: bytes) -> Any:
    """The JSON request body; None when empty; the ``ValueError`` class itself when it is not JSON."""
    if not body:
        return None
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return ValueError
