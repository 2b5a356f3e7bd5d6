"""OData query options over a store :class:`~.store.Entity`, translated to SQL (OData 4.0; domain-spec §4.3).

* ``$select`` — :func:`select`: property names a read returns; an unknown one is ``400`` "Could not find a
  property named …";
* ``$filter`` — :class:`FilterParser`: a subset of the OData grammar, ``prop op literal`` with
  ``eq ne gt ge lt le``, ``and``/``or``/``not``, parentheses, ``contains``/``startswith``/``endswith``; literals
  ``'string'``, GUID, date-time ``YYYY-MM-DDTHH:MM:SSZ``,
  number, ``null``, ``true``/``false``. String comparisons are case-insensitive, as
  Dataverse's SQL collation;
* ``$orderby`` — :func:`order_by`; ``$top`` — :func:`top`.

Lookups are addressed as ``_<column>_value``. Errors are :class:`~.responses.ApiError` (400) with Dataverse's
wording.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .responses import ApiError
from .store import GUID, MEMO, STR, Entity


def select(ent: Entity, query: Mapping[str, str]) -> list[str]:
    """The properties ``$select`` names (all readable ones when absent).

    Raises:
        ApiError: 400 for a property the entity does not have.
    """
    raw = query.get("$select")
    if not raw:
        return ent.readable()
    names = [n.strip() for n in raw.split(",") if n.strip()]
    readable = set(ent.readable())
    for n in names:
        if n not in readable:
            raise ApiError(400, "0x0", f"Could not find a property named '{n}' on type "
                                       f"'Microsoft.Dynamics.CRM.{ent.logical}'.")
    return names


def order_by(ent: Entity, query: Mapping[str, str]) -> str:
    """`` ORDER BY …`` for ``$orderby`` (``prop [asc|desc]`` list), or ``""``.

    Raises:
        ApiError: 400 for an unknown property or direction.
    """
    if not query.get("$orderby"):
        return ""
    parts = []
    for item in query["$orderby"].split(","):
        bits = item.split()
        col = column_of(ent, bits[0]) if bits else None
        direction = bits[1].upper() if len(bits) > 1 else "ASC"
        if col is None or direction not in ("ASC", "DESC"):
            raise ApiError(400, "0x0", f"Invalid $orderby: {item!r}")
        parts.append(f"{col} {direction}")
    return " ORDER BY " + ", ".join(parts)


def top(query: Mapping[str, str]) -> str:
    """`` LIMIT n`` for ``$top``, or ``""``. Raises ApiError (400) when it is not an integer."""
    if not query.get("$top"):
        return ""
    try:
        return f" LIMIT {int(query['$top'])}"
    except ValueError:
        raise ApiError(400, "0x0", f"Invalid $top: {query['$top']!r}") from None


def where(ent: Entity, query: Mapping[str, str]) -> tuple[str, list[Any]]:
    """`` WHERE …`` and its parameters for ``$filter``, or ``("", [])``."""
    if not query.get("$filter"):
        return "", []
    sql, params = FilterParser(ent, query["$filter"]).parse()
    return f" WHERE {sql}", params


def column_of(ent: Entity, prop: str) -> str | None:
    """The stored column a property name addresses (``_x_value`` -> lookup column ``x``), or None."""
    cols = ent.all_columns()
    if prop.startswith("_") and prop.endswith("_value"):
        inner = prop[1:-6]
        return inner if any(lk.column == inner for lk in ent.lookups.values()) else None
    if prop in cols and prop not in {lk.column for lk in ent.lookups.values()}:
        return prop
    return None


_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                    r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12})|(?P<date>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z)|(?P<num>-?\d+(?:\.\d+)?)|(?P<punct>[(),])|"
                    r"(?P<word>[A-Za-z_][A-Za-z0-9_]*))")
_OPS = {"eq": "=", "ne": "!=", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}


class FilterParser:
    """A small OData ``$filter`` subset (see the module docstring) as an SQL expression with ``?`` parameters."""

    def __init__(self, ent: Entity, text: str):
        self.ent = ent
        self.text = text
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if not m:
                raise ApiError(400, "0x0", f"Syntax error at position {pos} in '{text}'.")
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind)))
            pos = m.end()
        self.i = 0
        self.params: list[Any] = []

    def parse(self) -> tuple[str, list[Any]]:
        sql = self._or()
        if self.i != len(self.tokens):
            raise ApiError(400, "0x0", f"Syntax error in $filter '{self.text}'.")
        return sql, self.params

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _next(self) -> tuple[str, str]:
        tok = self._peek()
        if tok is None:
            raise ApiError(400, "0x0", f"Unexpected end of $filter '{self.text}'.")
        self.i += 1
        return tok

    def _or(self) -> str:
        left = self._and()
        while self._peek() == ("word", "or"):
            self.i += 1
            left = f"({left} OR {self._and()})"
        return left

    def _and(self) -> str:
        left = self._unary()
        while self._peek() == ("word", "and"):
            self.i += 1
            left = f"({left} AND {self._unary()})"
        return left

    def _unary(self) -> str:
        if self._peek() == ("word", "not"):
            self.i += 1
            return f"(NOT {self._unary()})"
        if self._peek() == ("punct", "("):
            self.i += 1
            inner = self._or()
            if self._next() != ("punct", ")"):
                raise ApiError(400, "0x0", f"Missing ')' in $filter '{self.text}'.")
            return inner
        return self._comparison()

    def _prop(self, name: str) -> tuple[str, str]:
        col = column_of(self.ent, name)
        if col is None:
            raise ApiError(400, "0x0", f"Could not find a property named '{name}' on type "
                                       f"'Microsoft.Dynamics.CRM.{self.ent.logical}'.")
        return col, self.ent.all_columns()[col]

    def _literal(self) -> Any:
        kind, val = self._next()
        if kind == "str":
            return val[1:-1].replace("''", "'")
        if kind == "guid":
            return val.lower()
        if kind == "date":  # Edm.DateTimeOffset, compared with the stored YYYY-MM-DDTHH:MM:SSZ text
            return val.split(".")[0].rstrip("Z") + "Z"
        if kind == "num":
            return float(val) if "." in val else int(val)
        if kind == "word" and val in ("null", "true", "false"):
            return {"null": None, "true": 1, "false": 0}[val]
        raise ApiError(400, "0x0", f"Expected a literal in $filter '{self.text}', got {val!r}.")

    def _comparison(self) -> str:
        kind, word = self._next()
        if kind != "word":
            raise ApiError(400, "0x0", f"Syntax error in $filter '{self.text}'.")
        if word in ("contains", "startswith", "endswith") and self._peek() == ("punct", "("):
            self.i += 1
            pk, pname = self._next()
            col, _t = self._prop(pname)
            if self._next() != ("punct", ","):
                raise ApiError(400, "0x0", f"Syntax error in $filter '{self.text}'.")
            value = self._literal()
            if self._next() != ("punct", ")"):
                raise ApiError(400, "0x0", f"Missing ')' in $filter '{self.text}'.")
            esc = str(value).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = {"contains": f"%{esc}%", "startswith": f"{esc}%", "endswith": f"%{esc}"}[word]
            self.params.append(pattern)
            return f"({col} LIKE ? ESCAPE '\\')"
        col, typ = self._prop(word)
        okind, op = self._next()
        if okind != "word" or op not in _OPS:
            raise ApiError(400, "0x0", f"Unknown operator {op!r} in $filter '{self.text}'.")
        value = self._literal()
        if value is None:
            if op not in ("eq", "ne"):
                raise ApiError(400, "0x0", "null can only be compared with eq or ne.")
            return f"({col} IS {'NOT ' if op == 'ne' else ''}NULL)"
        if typ == GUID and isinstance(value, str):
            value = value.lower()
        self.params.append(value)
        collate = " COLLATE NOCASE" if typ in (STR, MEMO) else ""
        return f"({col} {_OPS[op]} ?{collate})"
