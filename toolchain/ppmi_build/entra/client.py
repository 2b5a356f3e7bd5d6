"""Building the FIC client for a project's ``[identity]`` settings, and making sure the FIC a plug-in needs exists.

``[identity] fic_target`` (DESIGN.md §4) chooses where the FIC lives: ``"app"`` (an app registration, Microsoft
Graph, :class:`~ppmi_build.entra.graph.GraphFicClient`) or ``"uami"`` (a user-assigned managed identity, ARM,
:class:`~ppmi_build.entra.arm.ArmFicClient`). :func:`ensure_fic` applies Entra's rules (domain-spec §1.7): the
20-FIC cap counted before creating, case-sensitive matching, immutable names.

Tokens: ``PPMI_GRAPH_TOKEN`` / ``PPMI_ARM_TOKEN``, then ``PPMI_ACCESS_TOKEN``, then azure-identity for the scope
(:func:`ppmi_build.http.tokens.default_token_getter`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..errors import CheckFailed, ConfigError, ServiceError
from ..http.retry import RetryPolicy
from ..http.tokens import default_token_getter
from ..identity.fic_records import Fic, case_only_message, match_fic, validate_fic
from .arm import ARM_URLS, ArmFicClient
from .base import FicClient, TokenGetter
from .graph import GRAPH_URLS, GraphFicClient


def client_from_settings(identity: Any, *, environ: Mapping[str, str] | None = None,
                         token_getter: TokenGetter | None = None, retry: RetryPolicy | None = None,
                         http_client: httpx.Client | None = None) -> FicClient:
    """Build the FIC client for ``settings.identity`` (:class:`ppmi_build.config.IdentitySettings`).

    Raises:
        ConfigError: missing ``application_object_id`` / ``uami_resource_id``, or no endpoint for the cloud.
    """
    cloud = getattr(identity, "cloud", "public") or "public"
    if identity.fic_target == "uami":
        if not identity.uami_resource_id:
            raise ConfigError("[identity] fic_target = \"uami\" needs uami_resource_id (the UAMI's resource ID, "
                              "`az identity show --query id`)")
        base = identity.arm_url or ARM_URLS.get(cloud)
        if not base:
            raise ConfigError(f"cloud {cloud!r} has no default ARM endpoint; set [identity] arm_url")
        return ArmFicClient(base, identity.uami_resource_id, token_getter or default_token_getter("arm", environ),
                            retry=retry, client=http_client)
    if not identity.application_object_id:
        raise ConfigError("[identity] fic_target = \"app\" needs application_object_id (the app registration's "
                          "Object ID, not its client ID)")
    base = identity.graph_url or GRAPH_URLS.get(cloud)
    if not base:
        raise ConfigError(f"cloud {cloud!r} has no default Graph endpoint; set [identity] graph_url")
    return GraphFicClient(base, identity.application_object_id,
                          token_getter or default_token_getter("graph", environ), retry=retry, client=http_client)


@dataclass
class EnsureResult:
    """What :func:`ensure_fic` found or did.

    Attributes:
        status: ``"unchanged"`` (exact FIC present), ``"created"``, or ``"planned"`` (would create).
        fic: the FIC that now exists (or would be created).
        notes: human remarks (case-only differences, renamed because the name was taken).
        existing: the FICs listed before any write.
    """

    status: str
    fic: Fic
    notes: list[str] = field(default_factory=list)
    existing: list[Fic] = field(default_factory=list)


def ensure_fic(client: FicClient, desired: Fic, *, apply: bool = True, existing: list[Fic] | None = None,
               keep: Iterable[Fic] = ()) -> EnsureResult:
    """Make sure a FIC with exactly ``desired``'s issuer, subject and audience exists on the identity.

    Matching is case-sensitive; a FIC that differs only in case is reported in ``notes`` and a correct
    one is added. When ``desired.name`` is taken by a FIC with other values, the name gets a ``-2``,
    ``-3`` … suffix (names are immutable; we never change a FIC we did not ask for). The 20-FIC cap is
    counted before creating.

    Args:
        apply: False = plan only: list, decide, write nothing.
        existing: the current FICs when the caller already listed them.
        keep: FICs not to propose for removal in a cap refusal.
    Raises:
        PlanRefused: the cap would be exceeded (also in plan mode).
        ServiceError/AuthError: Graph/ARM failures; CheckFailed when Entra refuses a case-only duplicate.
    """
    existing = client.list() if existing is None else existing
    validate_fic(desired)
    m = match_fic(existing, desired)
    notes: list[str] = []
    if m.case_only:
        notes.append(case_only_message(desired, m.case_only))
    if m.exact is not None:
        return EnsureResult("unchanged", m.exact, notes, existing)
    target = desired
    if m.name_taken is not None:
        taken = {f.name.casefold() for f in existing}
        n = 2
        while f"{desired.name}-{n}".casefold() in taken:
            n += 1
        target = Fic(name=f"{desired.name}-{n}"[:120], issuer=desired.issuer, subject=desired.subject,
                     audiences=desired.audiences, description=desired.description)
        notes.append(f"FIC name {desired.name!r} is used by a FIC with other values; using {target.name!r}")
    client.check_capacity(existing, 1, keep=list(keep) + [target])
    if not apply:
        return EnsureResult("planned", target, notes, existing)
    try:
        created = client.create(target)
    except ServiceError as e:
        if m.case_only and e.status in (400, 409):
            raise CheckFailed(f"{client.target} refused FIC {target.name!r}: {e.message}. {notes[0]}",
                              code="FIC_CASE") from None
        raise
    return EnsureResult("created", created, notes, existing)
