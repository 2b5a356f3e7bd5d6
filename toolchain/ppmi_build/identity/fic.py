"""Federated identity credential (FIC) values for Power Platform managed identity (plug-ins and packages).

Given the artifact's signing certificate, the Entra tenant ID and the Power Platform environment ID,
compute the FIC **issuer**, **subject identifier** and **audience** that Dataverse will present for a
``managedidentities`` record of ``version`` 0, 1 or 2 (domain-spec §1, all facts cited there):

* **v0** (deprecated): issuer ``https://{envhex[:30]}.{envhex[30:]}.environment.api.powerplatform.com/sts``
  (environment ID without hyphens, split before the last two characters; [MS-2024-08], [POTHIN],
  [WODTKE-2025]); subject ``component:pluginassembly,thumbprint:{SHA-1 upper},environment:{env ID
  with hyphens}`` ([MS-2024-07-draft], [WODTKE-2025]); audience lower case
  ``api://azureadtokenexchange`` (the three first-hand reports in domain-spec §1.0).
* **v1**: issuer ``{host}/{tenantId}/v2.0``; subject ``/eid1/c/{cloud}/t/{encodedTenantId}/a/
  qzXoWDkuqUa3l6zM5mM0Rw/n/plugin/e/{environmentId}/i/{issuer CN}/s/{subject CN}``, or ``…/h/{sha256}``
  for a self-signed certificate ([MS-V1]). CNs with commas fail with ``AADSTS700213`` and non-ASCII
  CNs with ``AADSTS70050`` ([MS-V1]/[MS-V2]): refused here.
* **v2**: as v1 but ``i/{issuerHash}/s/{subjectHash}`` where hash = base64url(SHA-256(UTF-8(.NET DN)))
  without padding, 43 characters ([MS-V2] "Compute the issuer and subject hashes"); self-signed keeps
  ``h/{sha256}`` ([MS-V2], [KT-CN]).

The cloud table is domain-spec §1.6 ([MS-V2] and [MS-2025-10]). Entra limits (domain-spec §1.7,
[ENTRA-FIC]): issuer, subject and audience at most 600 characters; FIC name 3–120 characters,
``[A-Za-z0-9][A-Za-z0-9_-]*``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography import x509

from ..errors import BadInput
from .certificates import (
    check_certificate,
    has_code_signing_eku,
    is_self_signed,
    self_signed_ambiguity,
    sha256_hex,
    thumbprint_sha1,
)
from .dn import certificate_name_ders, common_names, dotnet_name
from .guids import ParsedGuid, b64url, encoded_tenant_id, parse_guid

#: ``/a/`` segment: base64url(Guid.ToByteArray()) of 58e835ab-2e39-46a9-b797-accce6633447, the
#: production Power Platform managed identity app; "Internal use only. Don't modify" ([MS-V2];
#: domain-spec §1.4). Test = L5f3f5fVhEuUXYRgAT1Q4w, PreProd = CQSGf3JJtEi27nY2ePL7UQ ([MIG-PS]).
FIRST_PARTY_APP_SEGMENT = "qzXoWDkuqUa3l6zM5mM0Rw"

#: Entra's limit for issuer, subject and audience (domain-spec §1.7).
ENTRA_MAX_LENGTH = 600


@dataclass(frozen=True)
class Cloud:
    """One row of the sovereign-cloud table (domain-spec §1.6)."""

    name: str
    audience: str
    issuer_host: str
    subject_code: str  # the {cloud} in /eid1/c/{cloud}


#: domain-spec §1.6 ([MS-V2] and [MS-2025-10] print the same table). NOTE: USNat pairs with ``uss``
#: and USSec with ``usn``; that looks swapped against the names, but both doc versions print it
#: exactly so, and we follow the docs (confirm against an AADSTS700213 error text before relying on it).
CLOUDS: dict[str, Cloud] = {
    "public": Cloud("public", "api://AzureADTokenExchange", "https://login.microsoftonline.com", "pub"),
    "usgov": Cloud("usgov", "api://AzureADTokenExchangeUSGov", "https://login.microsoftonline.us", "usg"),
    "china": Cloud("china", "api://AzureADTokenExchangeChina", "https://login.partner.microsoftonline.cn", "chn"),
    "usnat": Cloud("usnat", "api://AzureADTokenExchangeUSNat", "https://login.microsoftonline.eaglex.ic.gov", "uss"),
    "ussec": Cloud("ussec", "api://AzureADTokenExchangeUSSec", "https://login.microsoftonline.scloud", "usn"),
}

#: Other names people use for the same clouds ("Public, GCC, first release station in GCC" share the
#: public values; GCC High and DoD = usgov; Mooncake = china: domain-spec §1.6).
CLOUD_ALIASES = {"gcc": "public", "gcchigh": "usgov", "gcc-high": "usgov", "dod": "usgov", "mooncake": "china"}

#: v0 audience: lower case per every first-hand v0 report (domain-spec §1.0).
V0_AUDIENCE = "api://azureadtokenexchange"


def cloud_for(name: str | None) -> Cloud:
    """The :class:`Cloud` for ``public|usgov|china|usnat|ussec`` (or an alias). Raises BadInput."""
    key = (name or "public").strip().lower()
    key = CLOUD_ALIASES.get(key, key)
    try:
        return CLOUDS[key]
    except KeyError:
        raise BadInput(f"cloud {name!r} is not known; use one of {', '.join(CLOUDS)}") from None


def _guid(value: str | ParsedGuid, label: str) -> ParsedGuid:
    return value if isinstance(value, ParsedGuid) else parse_guid(value, label)


# --- the string builders (each one testable against published values) ----------------------------


def v0_issuer(environment_id: str | ParsedGuid) -> str:
    """v0 issuer: hyphen-less environment ID split before its last two characters (domain-spec §1.0)."""
    hexid = _guid(environment_id, "environment ID").value.replace("-", "")
    return f"https://{hexid[:30]}.{hexid[30:]}.environment.api.powerplatform.com/sts"


def parse_thumbprint(text: str) -> tuple[str, list[str]]:
    """A SHA-1 thumbprint as people copy it -> ``(40 upper-case hex digits, notes on what was normalised)``.

    Accepted: the Windows certificate dialog's form (``d8 4a 1b …``: lower case, spaces, and a leading invisible
    U+200E LEFT-TO-RIGHT MARK), colons (``openssl x509 -fingerprint``), non-breaking spaces and zero-width
    characters (:func:`ppmi_build.inputs.strip_invisible`). The v0 subject needs upper case (domain-spec §1.0:
    ``thumbprint:{SHA-1 upper}``).

    Raises:
        BadInput: not 40 hex digits after that (names what is left), or typographic quotes around it.
    """
    from ..inputs import check_text, strip_invisible

    cleaned, dropped = strip_invisible(text)
    check_text(cleaned, "thumbprint")
    tp = re.sub(r"[\s:]", "", cleaned)
    if not re.fullmatch(r"[0-9A-Fa-f]{40}", tp):
        raise BadInput(f"thumbprint {ascii(text)} is not 40 hex digits (SHA-1) after removing spaces and colons "
                       f"({len(tp)} characters left: {tp[:48]!r}); copy the Thumbprint field of the certificate")
    notes = []
    if dropped:
        names = ", ".join(dict.fromkeys(d.code for d in dropped))
        notes.append(f"removed {len(dropped)} invisible character(s) from the thumbprint ({names})")
    if tp != cleaned.strip() or tp != tp.upper():
        notes.append(f"thumbprint normalized to {tp.upper()} (upper case, no spaces or colons)")
    return tp.upper(), notes


def v0_subject(thumbprint: str, environment_id: str | ParsedGuid) -> str:
    """v0 subject: ``component:pluginassembly,thumbprint:{SHA-1 upper},environment:{env ID with hyphens}``.
    ``thumbprint`` as :func:`parse_thumbprint` accepts it. Raises BadInput, GuidError."""
    tp, _ = parse_thumbprint(thumbprint)
    env = _guid(environment_id, "environment ID").value
    return f"component:pluginassembly,thumbprint:{tp},environment:{env}"


def v0_fic_from_thumbprint(thumbprint: str, environment_id: str | ParsedGuid) -> dict[str, Any]:
    """The version 0 FIC (public cloud only, domain-spec §1.0) from a SHA-1 thumbprint alone, for a certificate
    that is not at hand: ``{"version": 0, "issuer", "subject", "audience", "thumbprint_sha1", "environment_id",
    "notes", "warnings"}``. Raises BadInput, GuidError."""
    tp, notes = parse_thumbprint(thumbprint)
    env = _guid(environment_id, "environment ID")
    notes += [n for n in [env.note] if n]
    return {"version": 0, "issuer": v0_issuer(env), "subject": v0_subject(tp, env), "audience": V0_AUDIENCE,
            "cloud": "public", "environment_id": env.value, "thumbprint_sha1": tp, "notes": notes,
            "warnings": ["managed identity version 0 is deprecated; move to version 2 ([MS-V2] 'Upgrade to "
                         "version 2')"]}


def issuer_url(tenant_id: str | ParsedGuid, cloud: str | Cloud = "public") -> str:
    """v1/v2 issuer ``{host}/{tenantId}/v2.0`` (domain-spec §1.1; the host per cloud, §1.6)."""
    c = cloud if isinstance(cloud, Cloud) else cloud_for(cloud)
    return f"{c.issuer_host}/{_guid(tenant_id, 'tenant ID').value}/v2.0"


def subject_prefix(
    tenant_id: str | ParsedGuid,
    environment_id: str | ParsedGuid,
    cloud: str | Cloud = "public",
    *,
    first_party_app: str = FIRST_PARTY_APP_SEGMENT,
) -> str:
    """``/eid1/c/{cloud}/t/{encodedTenantId}/a/{app}/n/plugin/e/{environmentId}`` (domain-spec §1.1–1.4)."""
    c = cloud if isinstance(cloud, Cloud) else cloud_for(cloud)
    t = encoded_tenant_id(_guid(tenant_id, "tenant ID"))
    e = _guid(environment_id, "environment ID").value
    return f"/eid1/c/{c.subject_code}/t/{t}/a/{first_party_app}/n/plugin/e/{e}"


def self_signed_subject(prefix: str, sha256: str) -> str:
    """``{prefix}/h/{sha256}``: lower-case hex SHA-256 of the certificate DER (domain-spec §1.1)."""
    h = sha256.replace(":", "").lower()
    if not re.fullmatch(r"[0-9a-f]{64}", h):
        raise BadInput(f"SHA-256 {sha256!r} is not 64 hex digits")
    return f"{prefix}/h/{h}"


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def dn_hash(dn: str) -> str:
    """v2 DN hash: base64url(SHA-256(UTF-8(dn))) without padding, 43 characters ([MS-V2]).

    ``Encoding.UTF8.GetBytes`` replaces a lone UTF-16 surrogate (possible in a BMPString) with
    U+FFFD; so do we, instead of failing."""
    return b64url(hashlib.sha256(_LONE_SURROGATE.sub("\ufffd", dn).encode("utf-8")).digest())


def v2_trusted_subject(prefix: str, issuer_dn: str, subject_dn: str) -> str:
    """``{prefix}/i/{dn_hash(issuer)}/s/{dn_hash(subject)}`` (domain-spec §1.2)."""
    return f"{prefix}/i/{dn_hash(issuer_dn)}/s/{dn_hash(subject_dn)}"


def check_v1_cn(cn: str, role: str) -> list[str]:
    """Refuse a CN that Entra rejects in a v1 subject; return warnings for doubtful ones.

    Raises:
        BadInput: comma (``AADSTS700213``) or non-ASCII (``AADSTS70050``) in the CN ([MS-V1], [MS-V2]).
    """
    if "," in cn:
        raise BadInput(
            f"the {role} CN {cn!r} contains a comma, which fails under managed identity version 1 with "
            "AADSTS700213 (no matching federated identity record); use version 2 (--mi-version 2)"
        )
    if not cn.isascii():
        raise BadInput(
            f"the {role} CN {cn!r} contains non-ASCII characters, which fail under managed identity version 1 "
            "with AADSTS70050 (path not properly formatted); use version 2 (--mi-version 2)"
        )
    warnings = []
    if "/" in cn:
        warnings.append(f"the {role} CN {cn!r} contains '/', which splits the v1 subject path; prefer version 2")
    if not cn.strip():
        raise BadInput(f"the {role} CN is empty; version 1 needs a CN — use version 2 (--mi-version 2)")
    return warnings


def v1_trusted_subject(prefix: str, issuer_cn: str, subject_cn: str) -> str:
    """``{prefix}/i/{issuer CN}/s/{subject CN}``, raw CN text (domain-spec §1.1). Raises BadInput (see
    :func:`check_v1_cn`)."""
    check_v1_cn(issuer_cn, "issuer")
    check_v1_cn(subject_cn, "subject")
    return f"{prefix}/i/{issuer_cn}/s/{subject_cn}"


def fic_name(environment_id: str | ParsedGuid, cert: x509.Certificate, version: int = 2) -> str:
    """The FIC ``name`` ppmi-build gives the FIC of ``cert`` in an environment for record ``version``; the one
    source of FIC names (``ppmi-build fic`` prints it, ``release``/``rotate``/``upgrade`` create it).

    ``ppmi-<first 8 hex of the environment ID>-<first 12 hex of the certificate SHA-256>`` for version 2,
    with ``-v0`` / ``-v1`` appended for the older formats. Valid for Entra (3–120 characters,
    ``[A-Za-z0-9][A-Za-z0-9_-]*``, immutable). One name per environment, certificate and version, so rotation
    and the upgrade to version 2 add a FIC next to the old one instead of clashing with it."""
    env = _guid(environment_id, "environment ID").value.replace("-", "")[:8]
    name = f"ppmi-{env}-{sha256_hex(cert)[:12]}"
    return name if int(version) == 2 else f"{name}-v{int(version)}"


_FIC_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,119}")


def valid_fic_name(name: str) -> bool:
    """True when ``name`` satisfies Entra's FIC name rule (domain-spec §1.7)."""
    return bool(_FIC_NAME_RE.fullmatch(name))


# --- the whole computation -------------------------------------------------------------------------


@dataclass
class FicValues:
    """The FIC values for one certificate, tenant, environment, version and cloud.

    ``issuer``, ``subject``, ``audience`` go into the Entra federated identity credential as they are
    (matching is case-sensitive); ``name`` is a suggested FIC name; ``warnings`` are things the user
    should know (deprecated version, development-only certificate…); ``notes`` report normalised inputs.
    """

    version: int
    issuer: str
    subject: str
    audience: str
    name: str
    cloud: str
    tenant_id: str | None
    environment_id: str
    self_signed: bool
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compute_fic(
    cert: x509.Certificate,
    *,
    tenant_id: str | ParsedGuid | None,
    environment_id: str | ParsedGuid,
    version: int = 2,
    cloud: str = "public",
    now: _dt.datetime | None = None,
) -> FicValues:
    """Compute the FIC issuer, subject and audience Dataverse presents for ``cert``.

    Args:
        cert: the artifact's signing certificate (Authenticode signer for a ``.dll``, NuGet author
            signer for a ``.nupkg``).
        tenant_id: Entra tenant ID (any .NET GUID form); not needed for version 0.
        environment_id: Power Platform environment ID (any .NET GUID form).
        version: ``managedidentities.version``: 0, 1 or 2 (2 recommended, [MS-V2]).
        cloud: ``public`` (also GCC), ``usgov``, ``china``, ``usnat``, ``ussec``.
    Returns:
        :class:`FicValues`.
    Raises:
        GuidError: malformed tenant or environment ID.
        BadInput: unknown version or cloud; v1 CN with comma/non-ASCII or missing; v0 outside the
            public cloud; a value longer than Entra's 600 characters.
        CertificateError: ``cert`` is corrupt (a name .NET cannot render, a malformed extension).
    """
    check_certificate(cert, "the certificate")
    if version not in (0, 1, 2):
        raise BadInput(f"managed identity version {version!r} is not known; use 0, 1 or 2 (2 is recommended)")
    c = cloud_for(cloud)
    env = _guid(environment_id, "environment ID")
    notes = [n for n in [env.note] if n]
    tenant: ParsedGuid | None = None
    if tenant_id is not None and (version != 0 or tenant_id):
        tenant = _guid(tenant_id, "tenant ID")
        if tenant.note:
            notes.insert(0, tenant.note)
    warnings: list[str] = []
    self_signed = is_self_signed(cert)
    ambiguity = self_signed_ambiguity(cert)
    if ambiguity:
        warnings.append(ambiguity)

    if version == 0:
        if c.name != "public":
            raise BadInput(f"managed identity version 0 is only documented for the public cloud, not {c.name}; "
                           "use version 2 (--mi-version 2)")
        warnings.append("managed identity version 0 is deprecated; move to version 2 ([MS-V2] 'Upgrade to version 2')")
        issuer = v0_issuer(env)
        subject = v0_subject(thumbprint_sha1(cert), env)
        audience = V0_AUDIENCE
    else:
        if tenant is None:
            raise BadInput(f"version {version} needs the tenant ID; pass --tenant-id, set PPMI_TENANT_ID or "
                           "[identity] tenant_id in ppmi.toml")
        issuer = issuer_url(tenant, c)
        prefix = subject_prefix(tenant, env, c)
        audience = c.audience
        if self_signed:
            subject = self_signed_subject(prefix, sha256_hex(cert))
        elif version == 1:
            issuer_der, subject_der = certificate_name_ders(cert)
            icns, scns = common_names(issuer_der), common_names(subject_der)
            if not icns or not scns:
                which = "issuer" if not icns else "subject"
                raise BadInput(f"the certificate's {which} has no CN, which managed identity version 1 needs; "
                               "use version 2 (--mi-version 2)")
            for role, cns in (("issuer", icns), ("subject", scns)):
                if len(cns) > 1:
                    warnings.append(f"the {role} has {len(cns)} CNs; version 1 uses the first one ({cns[0]!r}) "
                                    "by assumption — prefer version 2")
                warnings.extend(check_v1_cn(cns[0], role))
            subject = v1_trusted_subject(prefix, icns[0], scns[0])
            warnings.append("managed identity version 1 builds the subject from CNs; version 2 works with any "
                            "certificate name and is recommended ([MS-V2])")
        else:
            issuer_der, subject_der = certificate_name_ders(cert)
            issuer_dn = dotnet_name(issuer_der, strict=True)
            subject_dn = dotnet_name(subject_der, strict=True)
            subject = v2_trusted_subject(prefix, issuer_dn, subject_dn)

    if self_signed:
        warnings.append("the certificate is self-signed: Dataverse accepts it for development and testing only, "
                        "not in production ([MS-V2])")
    if not has_code_signing_eku(cert):
        warnings.append("the certificate has no code-signing EKU (1.3.6.1.5.5.7.3.3); signtool/nuget and "
                        "ppmi-build sign need one")
    now = now or _dt.datetime.now(_dt.UTC)
    if now > cert.not_valid_after_utc:
        warnings.append(f"the certificate expired on {cert.not_valid_after_utc.date().isoformat()}; an artifact "
                        "signed with it needs a timestamp, and new signatures need a new certificate")
    for label, value in (("issuer", issuer), ("subject", subject), ("audience", audience)):
        if len(value) > ENTRA_MAX_LENGTH:
            raise BadInput(f"the FIC {label} is {len(value)} characters; Entra allows {ENTRA_MAX_LENGTH}; "
                           "use version 2 (--mi-version 2)")
    return FicValues(
        version=version,
        issuer=issuer,
        subject=subject,
        audience=audience,
        name=fic_name(env, cert, version),
        cloud=c.name,
        tenant_id=tenant.value if tenant else None,
        environment_id=env.value,
        self_signed=self_signed,
        warnings=warnings,
        notes=notes,
    )
