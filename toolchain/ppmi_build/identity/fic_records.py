"""Federated identity credential (FIC) records and Entra's rules for them, as pure values (no HTTP).

Sources: Entra "federated identity credential considerations" (domain-spec §1.7), the Microsoft Graph
``federatedIdentityCredential`` resource and the ARM ``Microsoft.ManagedIdentity`` 2023-01-31 REST reference:

* at most :data:`FIC_CAP` (20) FICs per application or user-assigned managed identity;
* ``name`` 3-120 characters, ``^[A-Za-z0-9][A-Za-z0-9_-]{2,119}$`` (the ARM path pattern), immutable;
* ``issuer``/``subject``/the single audience/``description`` at most 600 characters, no wildcards, no
  leading/trailing whitespace in ``issuer``; the (issuer, subject) pair unique per identity;
* issuer/subject/audience matching is case-sensitive (Entra change of August 2024, ``AADSTS7002138``): an existing
  FIC that differs only in case does *not* count as present (:func:`match_fic`).

The values themselves (issuer, subject, audience, name) are computed by :mod:`ppmi_build.identity.fic`
(domain-spec §1); the Graph/ARM clients that store them are in :mod:`ppmi_build.entra`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

#: Entra: "A maximum of 20 federated identity credentials can be added to an application or
#: user-assigned managed identity." (entra-docs federated-credential-configuration-considerations)
FIC_CAP = 20
#: issuer, subject, audience and description limits (same source, Graph resource reference).
MAX_VALUE_CHARS = 600
#: ARM path pattern for federatedIdentityCredentialResourceName (2023-01-31 REST reference); the
#: Entra considerations page says the same in words (3-120, alphanumeric/dash/underscore, first alphanumeric).
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,119}$")
#: Marker put in the description of every FIC this tool creates, so we can say which FICs could go.
DESCRIPTION_MARKER = "ppmi-build"


@dataclass(frozen=True)
class Fic:
    """A federated identity credential as Graph or ARM returns it.

    Attributes:
        name: the FIC name (unique per identity, immutable).
        issuer / subject: exact strings, compared case-sensitively.
        audiences: list with one audience (e.g. ``api://AzureADTokenExchange``).
        description: free text (Graph only; ARM has no description, we return "").
        id: Graph object id (GUID) or ARM resource id; None for a FIC not yet created.
    """

    name: str
    issuer: str
    subject: str
    audiences: tuple[str, ...]
    description: str = ""
    id: str | None = None

    @property
    def audience(self) -> str:
        return self.audiences[0] if self.audiences else ""

    def same_values(self, other: Fic) -> bool:
        """Exact (case-sensitive) equality of issuer, subject and audiences: what Entra matches on."""
        return (self.issuer, self.subject, tuple(self.audiences)) == (other.issuer, other.subject,
                                                                     tuple(other.audiences))

    def same_values_ignoring_case(self, other: Fic) -> bool:
        return (self.issuer.casefold(), self.subject.casefold(), tuple(a.casefold() for a in self.audiences)) == (
            other.issuer.casefold(), other.subject.casefold(), tuple(a.casefold() for a in other.audiences))

    @property
    def made_by_ppmi(self) -> bool:
        return DESCRIPTION_MARKER in (self.description or "") or self.name.startswith("ppmi-")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "issuer": self.issuer, "subject": self.subject,
                "audiences": list(self.audiences), "description": self.description, "id": self.id}


@dataclass
class FicMatch:
    """Result of looking for a desired FIC among the existing ones.

    Attributes:
        exact: the existing FIC with byte-identical issuer, subject and audience, or None.
        case_only: existing FICs equal to the desired one only when case is ignored; Entra will not
            match them (``AADSTS7002138``), so they are reported, not used.
        name_taken: an existing FIC that already uses the desired name with other values.
    """

    exact: Fic | None = None
    case_only: list[Fic] = field(default_factory=list)
    name_taken: Fic | None = None


def match_fic(existing: Iterable[Fic], desired: Fic) -> FicMatch:
    """Find ``desired`` among ``existing`` with Entra's case-sensitive matching (domain-spec §1.7)."""
    m = FicMatch()
    for fic in existing:
        if fic.same_values(desired):
            m.exact = m.exact or fic
        elif fic.same_values_ignoring_case(desired):
            m.case_only.append(fic)
        if fic.name.casefold() == desired.name.casefold() and not fic.same_values(desired):
            m.name_taken = fic
    return m


def case_only_message(desired: Fic, others: list[Fic]) -> str:
    """One line naming the FICs that differ from ``desired`` only in letter case, and which field."""
    parts = []
    for o in others:
        fields = [f for f, a, b in (("issuer", o.issuer, desired.issuer), ("subject", o.subject, desired.subject),
                                    ("audience", o.audience, desired.audience)) if a != b]
        parts.append(f"{o.name!r} ({', '.join(fields)})")
    return (f"FIC {', '.join(parts)} differs from the required values only in letter case; Entra matches "
            f"case-sensitively (AADSTS7002138), so it will not be used; delete it once the correct FIC works")


# --- validation and names -----------------------------------------------------------------------


def validate_fic_name(name: str) -> str:
    """Return ``name`` if Entra accepts it, else raise :class:`ConfigError` saying why.

    Rule: 3–120 characters, alphanumeric, dash or underscore, first character alphanumeric
    (Entra FIC considerations; ARM pattern ``^[a-zA-Z0-9]{1}[a-zA-Z0-9-_]{2,119}$``).
    """
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(
            f"FIC name {name!r} is not valid: use 3-120 characters, letters, digits, '-' or '_', "
            "starting with a letter or digit")
    return name


def validate_fic(fic: Fic) -> Fic:
    """Check a FIC against the Entra limits before sending it (domain-spec §1.7).

    Raises:
        ConfigError: name rule, empty or >600-character issuer/subject/audience/description, wildcard,
            leading/trailing whitespace in the issuer, not exactly one audience.
    """
    validate_fic_name(fic.name)
    if len(fic.audiences) != 1:
        raise ConfigError(f"FIC {fic.name!r} has {len(fic.audiences)} audiences; Entra accepts exactly one")
    for label, value in (("issuer", fic.issuer), ("subject", fic.subject), ("audience", fic.audience)):
        if not value:
            raise ConfigError(f"FIC {fic.name!r} has an empty {label}; compute it with `ppmi-build fic`")
        if len(value) > MAX_VALUE_CHARS:
            raise ConfigError(f"FIC {fic.name!r}: {label} is {len(value)} characters; Entra allows at most "
                              f"{MAX_VALUE_CHARS}")
        if "*" in value:
            raise ConfigError(f"FIC {fic.name!r}: {label} contains '*'; Entra does not support wildcards")
    if fic.issuer != fic.issuer.strip():
        raise ConfigError(f"FIC {fic.name!r}: issuer has leading or trailing whitespace; remove it")
    if len(fic.description or "") > MAX_VALUE_CHARS:
        raise ConfigError(f"FIC {fic.name!r}: description is longer than {MAX_VALUE_CHARS} characters")
    return fic


def desired_fic(values: Any, description: str = "") -> Fic:
    """The :class:`Fic` to create for ``identity.fic.compute_fic`` output ``values`` (issuer, subject,
    audience, name). The name is ``values.name`` (:func:`ppmi_build.identity.fic.fic_name`, the one source of
    FIC names: ``-v0``/``-v1`` suffixed for the older record versions, so an upgrade to version 2 (domain-spec
    §2.5: add the v2 FIC and keep the old one) never clashes with the old FIC's name).

    Raises:
        ConfigError: a value breaks an Entra rule (:func:`validate_fic`).
    """
    fic = Fic(name=values.name, issuer=values.issuer, subject=values.subject, audiences=(values.audience,),
              description=description[:MAX_VALUE_CHARS])
    return validate_fic(fic)


def fic_description(environment_name: str, environment_id: str, cert_subject: str, cert_sha256: str,
                    version: int) -> str:
    """Description written on FICs we create (Graph only keeps it): says who made it and for what."""
    text = (f"{DESCRIPTION_MARKER}: env {environment_name} ({environment_id}), managed identity v{version}, "
            f"certificate {cert_subject} sha256 {cert_sha256}")
    return text[:MAX_VALUE_CHARS]
