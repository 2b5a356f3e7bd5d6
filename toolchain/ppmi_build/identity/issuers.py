"""FICs for a certificate whose issuing CA changes: one version-2 FIC per issuer (production-keys §2(b)).

A version-2 trusted-issuer subject is ``…/i/{hash of the issuer DN}/s/{hash of the subject DN}`` (domain-spec §1.2),
so a Trusted Signing profile, whose daily leaf keeps its subject but may come from any of several issuing CAs,
needs one FIC per issuing CA, and Entra allows :data:`FIC_CAP` FICs per identity
(https://learn.microsoft.com/graph/api/application-post-federatedidentitycredentials).

The known issuing CAs are data (``ppmi_build/data/trusted-signing-issuers.toml``, with its sources), extended by
``[signing] extra_issuers`` in ppmi.toml. DN strings are in .NET's rendering
(:func:`ppmi_build.identity.dn.dotnet_name`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass

from .fic import dn_hash, issuer_url, subject_prefix

#: Entra's limit of federated identity credentials per application or managed identity
FIC_CAP = 20
ISSUERS_FILE = "trusted-signing-issuers.toml"


@dataclass(frozen=True)
class IssuerFic:
    """One FIC of an issuer set: ``issuer_dn`` (.NET rendering), ``source`` (``certificate``, ``known`` or
    ``ppmi.toml``), ``issuer``/``subject`` (the FIC values) and whether it is the current certificate's."""

    issuer_dn: str
    source: str
    issuer: str
    subject: str
    current: bool

    def as_dict(self) -> dict[str, object]:
        return {"issuer_dn": self.issuer_dn, "source": self.source, "issuer": self.issuer, "subject": self.subject,
                "current": self.current}


def known_issuers() -> list[str]:
    """The issuing-CA DNs of Trusted Signing listed in the package data (in file order)."""
    from ..resources import data

    doc = tomllib.loads((data() / ISSUERS_FILE).read_text(encoding="utf-8"))
    return [str(i["name"]) for i in doc.get("issuer", [])]


def issuer_set(current_issuer: str, subject_dn: str, *, tenant_id: str, environment_id: str, cloud: str = "public",
               extra: Iterable[str] = ()) -> list[IssuerFic]:
    """The version-2 FICs of ``subject_dn`` for the current issuer, every known issuer and ``extra`` ones
    (duplicates dropped, current first).

    Raises:
        GuidError / BadInput: malformed tenant or environment ID, unknown cloud.
    """
    prefix = subject_prefix(tenant_id, environment_id, cloud)
    iss = issuer_url(tenant_id, cloud)
    out: list[IssuerFic] = []
    seen: set[str] = set()
    for dn, source in ([(current_issuer, "certificate")] + [(d, "known") for d in known_issuers()]
                       + [(d, "ppmi.toml") for d in extra]):
        if dn in seen:
            continue
        seen.add(dn)
        out.append(IssuerFic(dn, source, iss, f"{prefix}/i/{dn_hash(dn)}/s/{dn_hash(subject_dn)}",
                             dn == current_issuer))
    return out
