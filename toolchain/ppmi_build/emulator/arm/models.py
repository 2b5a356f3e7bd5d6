"""ARM's view of a user-assigned managed identity's federated identity credentials (``Microsoft.ManagedIdentity``
2023-01-31 REST reference; Entra rules in :mod:`ppmi_build.emulator.entra.models`, domain-spec §1.7).

Besides the Entra rules, ARM refuses concurrent FIC writes to one identity with 409
``ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity``: each write takes
:data:`ARM_WRITE_SECONDS`, and a second write to the same identity in that window is refused
(:func:`write_slot`).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

#: Simulated duration of one ARM FIC write; a second write to the same UAMI inside it gets 409.
ARM_WRITE_SECONDS = 0.05
ARM_API_VERSIONS = {"2018-11-30", "2021-09-30-preview", "2022-01-31-preview", "2023-01-31",
                    "2023-07-31-preview", "2024-11-30", "2025-01-31-preview"}
ARM_FIC_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials"

_busy: dict[tuple[int, str], bool] = {}
_busy_guard = threading.Lock()


def identity_id(sub: str, rg: str, uami: str) -> str:
    """The ARM resource id of a user-assigned managed identity."""
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{uami}"


def owner(identity: str) -> str:
    """The Entra store owner key of a user-assigned managed identity (resource ids are case-insensitive)."""
    return "uami:" + identity.casefold()


def resource(identity: str, row: Any) -> dict[str, Any]:
    """A stored FIC (``(id, name, issuer, subject, audiences JSON, …)``) as the ARM resource JSON."""
    return {"id": f"{identity}/federatedIdentityCredentials/{row[1]}", "name": row[1], "type": ARM_FIC_TYPE,
            "properties": {"issuer": row[2], "subject": row[3], "audiences": json.loads(row[4])}}


@contextlib.contextmanager
def write_slot(state: Any, owner_key: str) -> Iterator[bool]:
    """Hold the one write slot of an identity: yields False when another write holds it (answer 409)."""
    key = (id(state), owner_key)
    with _busy_guard:
        if _busy.get(key):
            yield False
            return
        _busy[key] = True
    try:
        yield True
    finally:
        with _busy_guard:
            _busy.pop(key, None)
