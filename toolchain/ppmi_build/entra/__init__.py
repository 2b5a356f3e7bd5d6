"""Entra federated identity credential (FIC) clients: Microsoft Graph (app registrations) and Azure Resource
Manager (user-assigned managed identities), over :mod:`ppmi_build.http`.

* :mod:`.base`: the HTTP session per endpoint and the :class:`FicClient` interface (cap check and its message);
* :mod:`.graph`: :class:`GraphFicClient` (``/v1.0/applications/{id}/federatedIdentityCredentials``);
* :mod:`.arm`: :class:`ArmFicClient` (``Microsoft.ManagedIdentity`` 2023-01-31, one write at a time per identity);
* :mod:`.client`: :func:`client_from_settings` (``[identity]`` of ppmi.toml, DESIGN.md §4) and :func:`ensure_fic`.

The FIC records and Entra's rules for them (domain-spec §1.7) are pure values in
:mod:`ppmi_build.identity.fic_records`, re-exported here. Names are exported lazily (PEP 562).
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "DESCRIPTION_MARKER": "ppmi_build.identity.fic_records", "FIC_CAP": "ppmi_build.identity.fic_records",
    "MAX_VALUE_CHARS": "ppmi_build.identity.fic_records", "NAME_RE": "ppmi_build.identity.fic_records",
    "Fic": "ppmi_build.identity.fic_records", "FicMatch": "ppmi_build.identity.fic_records",
    "case_only_message": "ppmi_build.identity.fic_records", "desired_fic": "ppmi_build.identity.fic_records",
    "fic_description": "ppmi_build.identity.fic_records", "match_fic": "ppmi_build.identity.fic_records",
    "validate_fic": "ppmi_build.identity.fic_records", "validate_fic_name": "ppmi_build.identity.fic_records",
    "FicClient": "ppmi_build.entra.base", "FicHttp": "ppmi_build.entra.base", "TokenGetter": "ppmi_build.entra.base",
    "GRAPH_URLS": "ppmi_build.entra.graph", "GraphFicClient": "ppmi_build.entra.graph",
    "ARM_API_VERSION": "ppmi_build.entra.arm", "ARM_CONCURRENT_CODE": "ppmi_build.entra.arm",
    "ARM_URLS": "ppmi_build.entra.arm", "UAMI_RE": "ppmi_build.entra.arm", "ArmFicClient": "ppmi_build.entra.arm",
    "EnsureResult": "ppmi_build.entra.client", "client_from_settings": "ppmi_build.entra.client",
    "ensure_fic": "ppmi_build.entra.client",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
