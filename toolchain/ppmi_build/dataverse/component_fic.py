"""Dataverse's own FIC subject for a component: ``GetComponentManagedIdentityFIC`` (validation.md §4).

``GET GetComponentManagedIdentityFIC(ComponentId=@id,ComponentName=@n)?@id=<guid>&@n='pluginassembly'`` returns
the complex type ``GetComponentManagedIdentityFICResponse {FICSubject: Edm.String}`` (Learn Web API reference
getcomponentmanagedidentityfic / getcomponentmanagedidentityficresponse). ``ComponentName`` is the table's logical
name; ``pluginassembly`` and ``pluginpackage`` are inferred from the one public call (validation.md §4), not
confirmed.

An environment that does not offer the function (older or sovereign clouds) answers 404 — Dataverse's "Resource
not found for the segment" error ``0x8006088a`` (the code the Web API gives for an unknown path segment; not
stated in the research notes for this function, so any 404 counts as "not offered"): :func:`component_fic` then
returns ``offered=False`` and callers fall back to the subject they computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import DataverseError

FUNCTION = "GetComponentManagedIdentityFIC"
#: the Web API code of "Resource not found for the segment …"
NOT_OFFERED_CODES = ("0x8006088a",)


@dataclass(frozen=True)
class ComponentFic:
    """Dataverse's answer: ``subject`` (``FICSubject``) when ``offered``; else None and ``reason`` says why."""

    offered: bool
    subject: str | None
    reason: str = ""


def component_fic(dv: Any, component_id: str, component_name: str) -> ComponentFic:
    """Ask Dataverse for the FIC subject of a ``pluginassembly``/``pluginpackage`` row (one GET).

    Args:
        dv: a :class:`ppmi_build.dataverse.client.DataverseClient`.
        component_id: the row id (GUID).
        component_name: ``pluginassembly`` or ``pluginpackage``.
    Returns:
        :class:`ComponentFic`.
    Raises:
        DataverseError: any answer other than 200 or a "not offered" 404.
    """
    params = {"@id": component_id, "@n": f"'{component_name}'"}
    path = f"{FUNCTION}(ComponentId=@id,ComponentName=@n)"
    try:
        resp = dv.request("GET", path, params=params)
    except DataverseError as e:
        if e.status == 404 and (e.code in NOT_OFFERED_CODES or e.code is None):
            return ComponentFic(False, None, f"{dv.url} does not offer {FUNCTION} (HTTP 404 {e.code or ''})".strip())
        raise
    data = resp.json()
    subject = data.get("FICSubject")
    if not isinstance(subject, str) or not subject:
        return ComponentFic(False, None, f"{FUNCTION} answered without a FICSubject")
    return ComponentFic(True, subject)


def first_difference(a: str, b: str) -> tuple[int, str, str] | None:
    """``(index, a's character, b's character)`` of the first position where ``a`` and ``b`` differ ("" past the
    end of the shorter one), or None when they are equal."""
    if a == b:
        return None
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i, x, y
    n = min(len(a), len(b))
    return n, a[n:n + 1], b[n:n + 1]


def describe_difference(label_a: str, a: str, label_b: str, b: str) -> str:
    """One line naming both strings and where they first differ."""
    d = first_difference(a, b)
    if d is None:
        return f"{label_a} and {label_b} are equal: {a}"
    i, x, y = d
    case = " (a case-only difference)" if a.casefold() == b.casefold() else ""
    return (f"{label_a} {a!r} and {label_b} {b!r} differ at index {i}: {x!r} vs {y!r}{case}")
