"""GUIDs as .NET reads them, and the ``Guid.ToByteArray()`` base64url form Entra uses.

Parsing follows .NET ``Guid.Parse`` (dotnet/runtime ``System.Private.CoreLib/src/System/Guid.cs``,
``TryParseGuid``): surrounding white space is trimmed, then the length picks the format:

* ``N`` — 32 hex digits: ``0bb91e271d0c4a60973ced810d9695ff``
* ``D`` — hyphenated 8-4-4-4-12: ``0bb91e27-1d0c-4a60-973c-ed810d9695ff``
* ``B`` — ``D`` in braces: ``{0bb91e27-1d0c-4a60-973c-ed810d9695ff}``
* ``P`` — ``D`` in parentheses: ``(0bb91e27-1d0c-4a60-973c-ed810d9695ff)``
* ``X`` — ``{0x0bb91e27,0x1d0c,0x4a60,{0x97,0x3c,0xed,0x81,0x0d,0x96,0x95,0xff}}`` (white space
  anywhere inside is ignored, each field takes 1..8/4/4/2 hex digits after ``0x``)

Hex digits may be upper or lower case. The canonical form we hand on is ``D`` in lower case
(what Dataverse and Entra show, domain-spec §1.5). Not accepted (documented .NET compat
quirks nobody types): ``+``/``0x`` prefixes inside the ``D`` groups.

The all-zero GUID (.NET ``Guid.Empty``) is refused for the IDs in :data:`NON_EMPTY` (tenant, application,
environment and managed identity ID): Entra and Dataverse never assign it (it is the "no value" of a ``Guid``
field), so it is always a placeholder left in a template (``ppmi.toml`` comments show it).

``encodedTenantId`` (domain-spec §1.3, [MS-V2] "Get the encoded tenant ID"): base64url without
padding of ``Guid.ToByteArray()``, i.e. the first three groups little-endian (``uuid.UUID.bytes_le``),
always 22 characters.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass

from ..errors import GuidError

_HEX = "0-9A-Fa-f"
_D_RE = re.compile(rf"[{_HEX}]{{8}}-[{_HEX}]{{4}}-[{_HEX}]{{4}}-[{_HEX}]{{4}}-[{_HEX}]{{12}}")
_N_RE = re.compile(rf"[{_HEX}]{{32}}")
_X_RE = re.compile(
    rf"\{{0[xX]([{_HEX}]{{1,8}}),0[xX]([{_HEX}]{{1,4}}),0[xX]([{_HEX}]{{1,4}}),"
    rf"\{{((?:0[xX][{_HEX}]{{1,2}},){{7}}0[xX][{_HEX}]{{1,2}})\}}\}}"
)

#: Where each kind of ID is found; used in error messages (one line, names the fix).
HINTS: dict[str, str] = {
    "tenant ID": "copy the Directory (tenant) ID from the Microsoft Entra admin center (Overview page)",
    "environment ID": "copy the Environment ID from the Power Platform admin center (Environments > your "
    "environment > Details)",
    "application ID": "copy the Application (client) ID from the app registration or managed identity Overview",
    "managed identity ID": "use the managedidentityid GUID of the Dataverse managedidentities row",
}


#: Labels whose value is never the all-zero GUID (``Guid.Empty``): real IDs of these kinds are never empty.
NON_EMPTY = frozenset({"tenant ID", "environment ID", "application ID", "managed identity ID"})


@dataclass(frozen=True)
class ParsedGuid:
    """A GUID accepted by :func:`parse_guid`.

    Attributes:
        value: canonical form, lower-case hyphenated ``D`` format (36 characters).
        original: the text as given.
        format: the .NET format letter the text was in (``N``, ``D``, ``B``, ``P``, ``X``).
        label: what the GUID is (``"tenant ID"``), for messages.
    """

    value: str
    original: str
    format: str
    label: str = "GUID"

    @property
    def normalized(self) -> bool:
        """True when ``original`` differs from the canonical ``value``."""
        return self.original != self.value

    @property
    def note(self) -> str | None:
        """One-line note to show the user when the input was normalised, else None."""
        if not self.normalized:
            return None
        return f"{self.label} {self.original!r} normalized to {self.value}"

    @property
    def uuid(self) -> uuid.UUID:
        return uuid.UUID(self.value)

    @property
    def bytes_le(self) -> bytes:
        """The 16 bytes in .NET ``Guid.ToByteArray()`` order."""
        return self.uuid.bytes_le


def _shown(text: str) -> str:
    text = text if len(text) <= 80 else text[:77] + "..."
    return repr(text)


def parse_guid(text: str, label: str = "GUID", *, hint: str | None = None) -> ParsedGuid:
    """Parse ``text`` the way .NET ``Guid.Parse`` does (formats N, D, B, P, X; any case; surrounding
    white space).

    Args:
        text: the GUID text.
        label: what it is (``"tenant ID"``, ``"environment ID"``), used in the messages.
        hint: where to find a valid value; defaults to :data:`HINTS` for known labels.
    Returns:
        :class:`ParsedGuid` with the canonical lower-case hyphenated value.
    Raises:
        GuidError: not a GUID in any .NET format, or the all-zero GUID for a label in :data:`NON_EMPTY`
            (exit code 2), one line naming the input and the fix.
    """
    if not isinstance(text, str):
        raise GuidError(f"{label} is missing; {hint or HINTS.get(label, 'pass a GUID')}")
    fix = hint or HINTS.get(label, "pass a GUID like 0bb91e27-1d0c-4a60-973c-ed810d9695ff")
    s = text.strip()
    hexdigits: str | None = None
    fmt = "?"
    if len(s) == 32 and _N_RE.fullmatch(s):
        hexdigits, fmt = s, "N"
    elif len(s) == 36 and _D_RE.fullmatch(s):
        hexdigits, fmt = s.replace("-", ""), "D"
    elif len(s) == 38 and s[0] == "{" and s[-1] == "}" and _D_RE.fullmatch(s[1:-1]):
        hexdigits, fmt = s[1:-1].replace("-", ""), "B"
    elif len(s) == 38 and s[0] == "(" and s[-1] == ")" and _D_RE.fullmatch(s[1:-1]):
        hexdigits, fmt = s[1:-1].replace("-", ""), "P"
    elif s.startswith("{"):
        m = _X_RE.fullmatch("".join(s.split()))
        if m:
            tail = [b[2:].zfill(2) for b in m.group(4).split(",")]
            hexdigits = m.group(1).zfill(8) + m.group(2).zfill(4) + m.group(3).zfill(4) + "".join(tail)
            fmt = "X"
    if hexdigits is None:
        if not s:
            raise GuidError(f"{label} is empty; {fix}")
        from ..inputs import lookalike_problem

        pasted = lookalike_problem(text, label)  # typographic quotes/dashes, zero-width characters
        if pasted:
            raise GuidError(pasted)
        extra = ""
        if s.lower().startswith("default-") and label == "environment ID":
            extra = " (that looks like the default environment's name, not its ID)"
        raise GuidError(f"{label} {_shown(text)} is not a GUID{extra}; {fix}")
    u = uuid.UUID(hex=hexdigits)
    if u.int == 0 and label in NON_EMPTY:
        raise GuidError(f"{label} {_shown(text)} is the all-zero GUID (Guid.Empty), a placeholder that is never a "
                        f"real {label}; {fix}")
    return ParsedGuid(value=str(u), original=text, format=fmt, label=label)


def normalize_guid(text: str, label: str = "GUID") -> str:
    """Canonical lower-case hyphenated form of ``text`` (see :func:`parse_guid`). Raises GuidError."""
    return parse_guid(text, label).value


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 4648 §5; ``+``→``-``, ``/``→``_``, ``=`` stripped)."""
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def encoded_guid(text: str | ParsedGuid, label: str = "GUID") -> str:
    """base64url (no padding) of the GUID's .NET ``Guid.ToByteArray()`` bytes: 22 characters.

    This is ``{encodedTenantId}`` of the FIC subject (domain-spec §1.3, [MS-V2]):
    ``[Convert]::ToBase64String([Guid]::Parse($t).ToByteArray()).Replace('+','-').Replace('/','_').TrimEnd('=')``.
    Raises GuidError for a malformed GUID.
    """
    g = text if isinstance(text, ParsedGuid) else parse_guid(text, label)
    return b64url(g.bytes_le)


def encoded_tenant_id(tenant_id: str | ParsedGuid) -> str:
    """``{encodedTenantId}`` for the FIC subject (domain-spec §1.3). Raises GuidError."""
    return encoded_guid(tenant_id, "tenant ID")


def guid_from_encoded(encoded: str) -> str:
    """Inverse of :func:`encoded_guid`: 22-character base64url -> canonical GUID.

    Raises:
        GuidError: not 22 base64url characters decoding to 16 bytes.
    """
    s = encoded.strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]{22}", s):
        raise GuidError(f"{_shown(encoded)} is not a 22-character base64url GUID (Guid.ToByteArray order)")
    try:
        raw = base64.urlsafe_b64decode(s + "==")
    except (binascii.Error, ValueError):  # pragma: no cover - regex above rules this out
        raise GuidError(f"{_shown(encoded)} is not valid base64url") from None
    return str(uuid.UUID(bytes_le=raw))
