"""FIC issuer/subject/audience and GUID handling against the published vectors of domain-spec §7.

Provenance of the expected values (domain-spec §7 cites each source):
A/E: real, working values from [WODTKE-2026] and [KT-CN] (end-to-end verified) and public code;
B: decoded GUIDs of the /a/ constants; C/D: v0 issuers and subjects from [MS-2024-08], [WODTKE-2025],
the bassetassen blog and a GitHub README; F: a v1 subject printed in a Microsoft D365 doc;
G: **computed** by the domain-spec author with the documented algorithm ([MS-V2]: base64url of
SHA-256 of the UTF-8 .NET DN) — no official worked example exists; I: [KT-CN]/[MS-V2] payload literals.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from ppmi_build.errors import EXIT_BAD_INPUT, BadInput, GuidError
from ppmi_build.identity.certificates import is_self_signed, self_signed_ambiguity
from ppmi_build.identity.dn import parse_dotnet_dn
from ppmi_build.identity.fic import (
    CLOUDS,
    FIRST_PARTY_APP_SEGMENT,
    compute_fic,
    dn_hash,
    fic_name,
    issuer_url,
    self_signed_subject,
    subject_prefix,
    v0_issuer,
    v0_subject,
    v1_trusted_subject,
    v2_trusted_subject,
    valid_fic_name,
)
from ppmi_build.identity.guids import encoded_tenant_id, guid_from_encoded, parse_guid

# --- A. encodedTenantId ---------------------------------------------------------------------------


@pytest.mark.parametrize("tenant,encoded", [
    ("738016bf-2f59-46ca-9660-357d1de3b865", "vxaAc1kvykaWYDV9HeO4ZQ"),  # [WODTKE-2026]
    ("7f2c1900-9fd4-4b89-91d3-79a649996f0a", "ABksf9SfiUuR03mmSZlvCg"),  # [KT-CN]
    ("975f013f-7f24-47e8-a7d3-abc4752bf346", "PwFflyR_6Een06vEdSvzRg"),  # FMI subject in public code
    ("5f8a1a9f-2e1a-415f-b10c-84c3736a21b9", "nxqKXxouX0GxDITDc2ohuQ"),  # doc example tenant (computed)
])
def test_encoded_tenant_id(tenant, encoded):
    assert encoded_tenant_id(tenant) == encoded
    assert len(encoded) == 22
    assert guid_from_encoded(encoded) == tenant


def test_encoded_tenant_id_is_not_big_endian():
    # Negative vector: base64url of the big-endian bytes (uuid.bytes) is the wrong answer.
    wrong = "c4AWvy9ZRsqWYDV9HeO4ZQ"
    assert base64.urlsafe_b64encode(uuid.UUID("738016bf-2f59-46ca-9660-357d1de3b865").bytes).decode().rstrip("=") \
        == wrong
    assert encoded_tenant_id("738016bf-2f59-46ca-9660-357d1de3b865") != wrong


# --- B. /a/ constants -----------------------------------------------------------------------------


@pytest.mark.parametrize("segment,guid", [
    ("qzXoWDkuqUa3l6zM5mM0Rw", "58e835ab-2e39-46a9-b797-accce6633447"),  # Prod
    ("CQSGf3JJtEi27nY2ePL7UQ", "7f860409-4972-48b4-b6ee-763678f2fb51"),  # PreProd
    ("L5f3f5fVhEuUXYRgAT1Q4w", "7ff7972f-d597-4b84-945d-8460013d50e3"),  # Test
])
def test_first_party_app_segments(segment, guid):
    assert guid_from_encoded(segment) == guid
    assert encoded_tenant_id(guid) == segment


def test_prod_segment_is_the_default():
    assert FIRST_PARTY_APP_SEGMENT == "qzXoWDkuqUa3l6zM5mM0Rw"


# --- C/D. version 0 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("env,issuer", [
    ("92e1c10d-0b34-e28b-a4a8-7e3630f46a06",
     "https://92e1c10d0b34e28ba4a87e3630f46a.06.environment.api.powerplatform.com/sts"),  # [MS-2024-08]
    ("750120dc-071f-ebd0-953d-d08ec4ca5508",
     "https://750120dc071febd0953dd08ec4ca55.08.environment.api.powerplatform.com/sts"),  # GitHub README
    ("7efcc31a-c410-e20e-9b95-dd448cedf653",
     "https://7efcc31ac410e20e9b95dd448cedf6.53.environment.api.powerplatform.com/sts"),  # [WODTKE-2025]
    ("07d0e6ff-3293-eefd-9130-345f9adc035a",
     "https://07d0e6ff3293eefd9130345f9adc03.5a.environment.api.powerplatform.com/sts"),  # bassetassen
])
def test_v0_issuer(env, issuer):
    assert v0_issuer(env) == issuer


@pytest.mark.parametrize("thumbprint,env,subject", [
    ("C67255AD07AB5E6A0A3F1979DAC2F928A580E6F4", "7efcc31a-c410-e20e-9b95-dd448cedf653",
     "component:pluginassembly,thumbprint:C67255AD07AB5E6A0A3F1979DAC2F928A580E6F4,"
     "environment:7efcc31a-c410-e20e-9b95-dd448cedf653"),  # [WODTKE-2025]
    ("4349791EF561BF999AD43606FF91DD0D98615B6D", "07d0e6ff-3293-eefd-9130-345f9adc035a",
     "component:pluginassembly,thumbprint:4349791EF561BF999AD43606FF91DD0D98615B6D,"
     "environment:07d0e6ff-3293-eefd-9130-345f9adc035a"),  # bassetassen
    ("5973a4c494859d34c8a0702abede77fafa70508a", "750120dc-071f-ebd0-953d-d08ec4ca5508",  # lower case in: upper out
     "component:pluginassembly,thumbprint:5973A4C494859D34C8A0702ABEDE77FAFA70508A,"
     "environment:750120dc-071f-ebd0-953d-d08ec4ca5508"),  # GitHub README
])
def test_v0_subject(thumbprint, env, subject):
    assert v0_subject(thumbprint, env) == subject


def test_v0_compute(pki):
    values = compute_fic(pki.leaf.cert, tenant_id=None, environment_id="7EFCC31A-C410-E20E-9B95-DD448CEDF653",
                         version=0)
    tp = hashlib.sha1(pki.leaf.der).hexdigest().upper()
    assert values.issuer == "https://7efcc31ac410e20e9b95dd448cedf6.53.environment.api.powerplatform.com/sts"
    assert values.subject == \
        f"component:pluginassembly,thumbprint:{tp},environment:7efcc31a-c410-e20e-9b95-dd448cedf653"
    assert values.audience == "api://azureadtokenexchange"  # lower case (domain-spec §1.0)
    assert any("deprecated" in w for w in values.warnings)
    assert values.notes  # upper-case environment ID was normalised


def test_v0_outside_public_cloud_is_refused(pki):
    with pytest.raises(BadInput, match="version 2"):
        compute_fic(pki.leaf.cert, tenant_id=None, environment_id="7efcc31a-c410-e20e-9b95-dd448cedf653",
                    version=0, cloud="usgov")


# --- E. self-signed h/ subjects ---------------------------------------------------------------------


def test_wodtke_self_signed_subject():
    prefix = subject_prefix("738016bf-2f59-46ca-9660-357d1de3b865", "7efcc31a-c410-e20e-9b95-dd448cedf653")
    # nuget sign printed the hash in upper case; the FIC needs lower case
    subject = self_signed_subject(prefix, "B7D2145E1E8F76FAA41561E47B70EB3BC7CA5B2F337DED7480C21A343C8AC6C3")
    assert issuer_url("738016bf-2f59-46ca-9660-357d1de3b865") == \
        "https://login.microsoftonline.com/738016bf-2f59-46ca-9660-357d1de3b865/v2.0"
    assert subject == ("/eid1/c/pub/t/vxaAc1kvykaWYDV9HeO4ZQ/a/qzXoWDkuqUa3l6zM5mM0Rw/n/plugin/e/"
                       "7efcc31a-c410-e20e-9b95-dd448cedf653/h/"
                       "b7d2145e1e8f76faa41561e47b70eb3bc7ca5b2f337ded7480c21a343c8ac6c3")


def test_kt_cn_self_signed_subject():
    prefix = subject_prefix("7f2c1900-9fd4-4b89-91d3-79a649996f0a", "59b86021-2790-4a26-b386-15823676bbf4")
    assert issuer_url("7f2c1900-9fd4-4b89-91d3-79a649996f0a") == \
        "https://login.microsoftonline.com/7f2c1900-9fd4-4b89-91d3-79a649996f0a/v2.0"
    assert self_signed_subject(prefix, "226154c9d2662c1c5fbc213c47d61aa2b49f0d8d51dab6470084a09da46eea00") == (
        "/eid1/c/pub/t/ABksf9SfiUuR03mmSZlvCg/a/qzXoWDkuqUa3l6zM5mM0Rw/n/plugin/e/"
        "59b86021-2790-4a26-b386-15823676bbf4/h/226154c9d2662c1c5fbc213c47d61aa2b49f0d8d51dab6470084a09da46eea00")


@pytest.mark.parametrize("version", [1, 2])
def test_self_signed_uses_h_form_in_v1_and_v2(pki, version):
    values = compute_fic(pki.self_signed.cert, tenant_id="7f2c1900-9fd4-4b89-91d3-79a649996f0a",
                         environment_id="59b86021-2790-4a26-b386-15823676bbf4", version=version)
    assert values.self_signed
    assert values.subject == ("/eid1/c/pub/t/ABksf9SfiUuR03mmSZlvCg/a/qzXoWDkuqUa3l6zM5mM0Rw/n/plugin/e/"
                              "59b86021-2790-4a26-b386-15823676bbf4/h/"
                              + hashlib.sha256(pki.self_signed.der).hexdigest())
    assert values.audience == "api://AzureADTokenExchange"
    assert any("development" in w for w in values.warnings)


# --- F. v1 trusted-issuer subject ---------------------------------------------------------------------


def test_published_v1_subject():
    # MS D365 doc (read_file id 18335166553); its /a/ is the PreProd value, tenant decodes to 8f08bcba-…
    tenant = guid_from_encoded("urwIj5vn7Eq6VeRuc0PF9Q")
    assert tenant == "8f08bcba-e79b-4aec-ba55-e46e7343c5f5"
    prefix = subject_prefix(tenant, "137c15c0-84b4-ec8f-9666-012432c11550", first_party_app="CQSGf3JJtEi27nY2ePL7UQ")
    assert v1_trusted_subject(prefix, "Microsoft Code Signing PCA 2011", "Microsoft Corporation") == (
        "/eid1/c/pub/t/urwIj5vn7Eq6VeRuc0PF9Q/a/CQSGf3JJtEi27nY2ePL7UQ/n/plugin/e/137c15c0-84b4-ec8f-9666-012432c11550"
        "/i/Microsoft Code Signing PCA 2011/s/Microsoft Corporation")


def test_v1_compute_ca_issued(pki):
    values = compute_fic(pki.leaf.cert, tenant_id="5f8a1a9f-2e1a-415f-b10c-84c3736a21b9",
                         environment_id="7efcc31a-c410-e20e-9b95-dd448cedf653", version=1)
    assert not values.self_signed
    assert values.subject == ("/eid1/c/pub/t/nxqKXxouX0GxDITDc2ohuQ/a/qzXoWDkuqUa3l6zM5mM0Rw/n/plugin/e/"
                              "7efcc31a-c410-e20e-9b95-dd448cedf653/i/ppmi-build Test Code Signing CA"
                              "/s/Contoso Plug-in Signing")


def _issue(pki, subject: x509.Name, issuer=None, *, validate=True) -> x509.Certificate:
    issuer = issuer or pki.intermediate
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .sign(issuer.key, hashes.SHA256()))


@pytest.fixture(scope="module")
def comma_cert(pki):
    return _issue(pki, parse_dotnet_dn('CN="Contoso, Inc.", O=Contoso'))


@pytest.mark.parametrize("cn,code", [('"Contoso, Inc."', "AADSTS700213"), ("Contosö Plug-ins", "AADSTS70050")])
def test_v1_refuses_cn_entra_rejects(pki, cn, code):
    cert = _issue(pki, parse_dotnet_dn(f"CN={cn}"))
    with pytest.raises(BadInput) as exc:
        compute_fic(cert, tenant_id="5f8a1a9f-2e1a-415f-b10c-84c3736a21b9",
                    environment_id="7efcc31a-c410-e20e-9b95-dd448cedf653", version=1)
    assert code in str(exc.value) and "version 2" in str(exc.value)
    assert exc.value.exit_code == EXIT_BAD_INPUT
    # version 2 takes the same certificate
    v2 = compute_fic(cert, tenant_id="5f8a1a9f-2e1a-415f-b10c-84c3736a21b9",
                     environment_id="7efcc31a-c410-e20e-9b95-dd448cedf653", version=2)
    assert "/i/" in v2.subject


def test_v1_refuses_issuer_cn_with_comma(pki):
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = parse_dotnet_dn('CN="Fabrikam, Ltd CA"')
    now = dt.datetime.now(dt.UTC)
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(7).not_valid_before(now).not_valid_after(now + dt.timedelta(days=2))
          .sign(ca_key, hashes.SHA256()))

    class _Ca:
        cert, key = ca, ca_key

    leaf = _issue(pki, parse_dotnet_dn("CN=Fabrikam Plug-ins"), _Ca)
    with pytest.raises(BadInput, match="issuer CN .*AADSTS700213"):
        compute_fic(leaf, tenant_id="5f8a1a9f-2e1a-415f-b10c-84c3736a21b9",
                    environment_id="7efcc31a-c410-e20e-9b95-dd448cedf653", version=1)


def test_v1_without_cn_is_refused(pki):
    cert = _issue(pki, x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "No CN Ltd")]))
    with pytest.raises(BadInput, match="no CN"):
        compute_fic(cert, tenant_id="5f8a1a9f-2e1a-415f-b10c-84c3736a21b9",
                    environment_id="7efcc31a-c410-e20e-9b95-dd448cedf653", version=1)


def test_entra_600_character_limit(pki):
    long_cn = "A" * 520
    with pytest.warns(UserWarning):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, long_cn, _validate=False)])
    cert = _issue(pki, name)
    with pytest.raises(BadInput, match="600"):
        compute_fic(cert, tenant_id="5f8a1a9f-2e1a-415f-b10c-84c3736a21b9",
                    environment_id="7efcc31a-c410-e20e-9b95-dd448cedf653", version=1)
    v2 = compute_fic(cert, tenant_id="5f8a1a9f-2e1a-415f-b10c-84c3736a21b9",
                     environment_id="7efcc31a-c410-e20e-9b95-dd448cedf653", version=2)
    assert len(v2.subject) <= 600


# --- G. v2 DN hashes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dn,digest", [
    ("E=admin@contoso.com, CN=Contoso", "LtiWikztXnK4NdWpUCNRZivZuKZRsGpjuT_nuxE6hH4"),
    ("E=MariusWodtke@MariusWodtkeMVP.onmicrosoft.com, CN=MariusWodtkeMVP",
     "uUvnzudJG0KOL5OyzdpmAxi9pV4JIwqFYivEwjJMUkE"),
    ('CN="Contoso, Inc."', "mpzunx31VCGH8BrencjsIhtqA-6RFa3xKZz3EUgiw_Y"),
    ("CN=Contoso, Inc.", "Vmo1y0lqwCEwrLX6fD6bBvFCN1AyTs7VESKFrbH5E0w"),  # wrong (unquoted) DN form
    ("CN=Microsoft Code Signing PCA 2011, O=Microsoft Corporation, L=Redmond, S=Washington, C=US",
     "5_fLj7vGRmHRz6NFbBdCr4xQo3TZxnYSLFqEt6MAMd4"),
    ("", "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"),
])
def test_dn_hash(dn, digest):
    assert dn_hash(dn) == digest
    assert len(digest) == 43


def test_composed_v2_subject_example():
    prefix = subject_prefix("738016bf-2f59-46ca-9660-357d1de3b865", "7efcc31a-c410-e20e-9b95-dd448cedf653")
    dn = "E=MariusWodtke@MariusWodtkeMVP.onmicrosoft.com, CN=MariusWodtkeMVP"
    assert v2_trusted_subject(prefix, dn, dn) == (
        "/eid1/c/pub/t/vxaAc1kvykaWYDV9HeO4ZQ/a/qzXoWDkuqUa3l6zM5mM0Rw/n/plugin/e/7efcc31a-c410-e20e-9b95-dd448cedf653"
        "/i/uUvnzudJG0KOL5OyzdpmAxi9pV4JIwqFYivEwjJMUkE/s/uUvnzudJG0KOL5OyzdpmAxi9pV4JIwqFYivEwjJMUkE")


def test_v2_hashes_the_dotnet_dn_of_real_certificates(pki, comma_cert):
    # The [MS-V2] example subject written PowerShell-style renders as "E=admin@contoso.com, CN=Contoso".
    ms_example = _issue(pki, parse_dotnet_dn("E=admin@contoso.com,CN=Contoso"))
    values = compute_fic(ms_example, tenant_id="5f8a1a9f-2e1a-415f-b10c-84c3736a21b9",
                         environment_id="7efcc31a-c410-e20e-9b95-dd448cedf653")
    assert values.subject.endswith("/s/LtiWikztXnK4NdWpUCNRZivZuKZRsGpjuT_nuxE6hH4")
    # .NET quotes a CN with a comma: the hash is of 'CN="Contoso, Inc.", O=Contoso'; never of the unquoted form.
    v = compute_fic(comma_cert, tenant_id="5f8a1a9f-2e1a-415f-b10c-84c3736a21b9",
                    environment_id="7efcc31a-c410-e20e-9b95-dd448cedf653")
    assert v.subject.endswith("/s/" + dn_hash('CN="Contoso, Inc.", O=Contoso'))
    # The pki leaf (O then CN in DER order), issuer and subject written by hand from the reversal rule.
    leaf = compute_fic(pki.leaf.cert, tenant_id="5f8a1a9f-2e1a-415f-b10c-84c3736a21b9",
                       environment_id="7efcc31a-c410-e20e-9b95-dd448cedf653")
    assert leaf.version == 2 and not leaf.self_signed
    assert leaf.issuer == "https://login.microsoftonline.com/5f8a1a9f-2e1a-415f-b10c-84c3736a21b9/v2.0"
    assert leaf.subject == (
        "/eid1/c/pub/t/nxqKXxouX0GxDITDc2ohuQ/a/qzXoWDkuqUa3l6zM5mM0Rw/n/plugin/e/7efcc31a-c410-e20e-9b95-dd448cedf653"
        f"/i/{dn_hash('CN=ppmi-build Test Code Signing CA, O=ppmi-build tests')}"
        f"/s/{dn_hash('CN=Contoso Plug-in Signing, O=ppmi-build tests')}")
    assert leaf.warnings == []


# --- clouds (domain-spec §1.6) ---------------------------------------------------------------------

CLOUD_TABLE = {  # cloud: (audience, issuer host, subject prefix) as [MS-V2] prints them
    "public": ("api://AzureADTokenExchange", "https://login.microsoftonline.com", "/eid1/c/pub"),
    "usgov": ("api://AzureADTokenExchangeUSGov", "https://login.microsoftonline.us", "/eid1/c/usg"),
    "china": ("api://AzureADTokenExchangeChina", "https://login.partner.microsoftonline.cn", "/eid1/c/chn"),
    "usnat": ("api://AzureADTokenExchangeUSNat", "https://login.microsoftonline.eaglex.ic.gov", "/eid1/c/uss"),
    "ussec": ("api://AzureADTokenExchangeUSSec", "https://login.microsoftonline.scloud", "/eid1/c/usn"),
}


@pytest.mark.parametrize("cloud", sorted(CLOUD_TABLE))
def test_clouds(pki, cloud):
    audience, host, prefix = CLOUD_TABLE[cloud]
    values = compute_fic(pki.leaf.cert, tenant_id="5f8a1a9f-2e1a-415f-b10c-84c3736a21b9",
                         environment_id="7efcc31a-c410-e20e-9b95-dd448cedf653", cloud=cloud.upper())
    assert values.audience == audience
    assert values.issuer == f"{host}/5f8a1a9f-2e1a-415f-b10c-84c3736a21b9/v2.0"
    assert values.subject.startswith(prefix + "/t/nxqKXxouX0GxDITDc2ohuQ/a/qzXoWDkuqUa3l6zM5mM0Rw/n/plugin/e/")
    assert set(CLOUDS) == set(CLOUD_TABLE)


def test_cloud_aliases_and_unknown(pki):
    kw = dict(tenant_id="5f8a1a9f-2e1a-415f-b10c-84c3736a21b9", environment_id="7efcc31a-c410-e20e-9b95-dd448cedf653")
    assert compute_fic(pki.leaf.cert, cloud="gcc", **kw).audience == "api://AzureADTokenExchange"
    assert compute_fic(pki.leaf.cert, cloud="gcchigh", **kw).audience == "api://AzureADTokenExchangeUSGov"
    with pytest.raises(BadInput, match="public, usgov, china, usnat, ussec"):
        compute_fic(pki.leaf.cert, cloud="mars", **kw)


def test_version_and_tenant_checks(pki):
    with pytest.raises(BadInput, match="0, 1 or 2"):
        compute_fic(pki.leaf.cert, tenant_id="5f8a1a9f-2e1a-415f-b10c-84c3736a21b9",
                    environment_id="7efcc31a-c410-e20e-9b95-dd448cedf653", version=3)
    with pytest.raises(BadInput, match="tenant ID"):
        compute_fic(pki.leaf.cert, tenant_id=None, environment_id="7efcc31a-c410-e20e-9b95-dd448cedf653")


# --- I. payload GUIDs and the .NET GUID forms ----------------------------------------------------------


def test_payload_guids():
    # [KT-CN] managedidentities payload: applicationid written upper case; Dataverse and Entra show lower case.
    app = parse_guid("9F3D07CA-381E-43FC-8BEF-76DD03B460D6", "application ID")
    assert app.value == "9f3d07ca-381e-43fc-8bef-76dd03b460d6" and app.normalized
    assert "normalized to 9f3d07ca-381e-43fc-8bef-76dd03b460d6" in app.note
    mi = parse_guid("0bb91e27-1d0c-4a60-973c-ed810d9695ff", "managed identity ID")
    assert mi.value == "0bb91e27-1d0c-4a60-973c-ed810d9695ff" and not mi.normalized and mi.note is None
    # its tenantid is the tenant of vector E (KT-CN)
    tenant = parse_guid("7f2c1900-9fd4-4b89-91d3-79a649996f0a", "tenant ID")
    assert encoded_tenant_id(tenant) == "ABksf9SfiUuR03mmSZlvCg"


@pytest.mark.parametrize("text,fmt", [
    ("0bb91e27-1d0c-4a60-973c-ed810d9695ff", "D"),
    ("0BB91E27-1D0C-4A60-973C-ED810D9695FF", "D"),
    ("0bb91e271d0c4a60973ced810d9695ff", "N"),
    ("{0bb91e27-1d0c-4a60-973c-ed810d9695ff}", "B"),
    ("(0bb91e27-1d0c-4a60-973c-ed810d9695ff)", "P"),
    ("{0x0bb91e27,0x1d0c,0x4a60,{0x97,0x3c,0xed,0x81,0x0d,0x96,0x95,0xff}}", "X"),
    ("{0xbb91e27, 0x1d0c, 0x4a60, {0x97, 0x3c, 0xed, 0x81, 0xd, 0x96, 0x95, 0xff}}", "X"),  # short fields + spaces
    ("  0bb91e27-1d0c-4a60-973c-ed810d9695ff\n", "D"),
])
def test_dotnet_guid_forms(text, fmt):
    g = parse_guid(text, "tenant ID")
    assert g.value == "0bb91e27-1d0c-4a60-973c-ed810d9695ff"
    assert g.format == fmt
    assert g.normalized == (text != g.value)


@pytest.mark.parametrize("text", [
    "xyz", "", "   ", "0bb91e27-1d0c-4a60-973c-ed810d9695f", "0bb91e27-1d0c-4a60-973c-ed810d9695fff",
    "{0bb91e27-1d0c-4a60-973c-ed810d9695ff)", "0bb91e27-1d0c4a60-973c-ed810d9695ff-",
    "0bb91e27_1d0c_4a60_973c_ed810d9695ff",
    "g bb91e27-1d0c-4a60-973c-ed810d9695ff", "{0x0bb91e27,0x1d0c,0x4a60,{0x97,0x3c,0xed,0x81,0x0d,0x96,0x95}}",
    "contoso.onmicrosoft.com",
])
def test_malformed_guids(text):
    with pytest.raises(GuidError) as exc:
        parse_guid(text, "tenant ID")
    msg = str(exc.value)
    assert "tenant ID" in msg and "Entra admin center" in msg and "\n" not in msg
    assert exc.value.exit_code == 2


def test_default_environment_name_gets_a_hint():
    with pytest.raises(GuidError, match="default environment"):
        parse_guid("Default-5f8a1a9f-2e1a-415f-b10c-84c3736a21b9", "environment ID")


# --- names, self-signed detection ----------------------------------------------------------------------


def test_fic_names_are_valid_for_entra(pki):
    for c in (pki.leaf, pki.self_signed, pki.root, pki.ec):
        name = fic_name("7efcc31a-c410-e20e-9b95-dd448cedf653", c.cert)
        assert valid_fic_name(name) and 3 <= len(name) <= 120
        assert name == "ppmi-7efcc31a-" + hashlib.sha256(c.der).hexdigest()[:12]
    assert not valid_fic_name("-bad") and not valid_fic_name("ab") and not valid_fic_name("a" * 121)
    assert not valid_fic_name("has space")


def test_self_signed_detection(pki):
    assert is_self_signed(pki.self_signed.cert)
    assert is_self_signed(pki.root.cert)  # a self-signed CA is self-signed too
    assert not is_self_signed(pki.leaf.cert)
    assert not is_self_signed(pki.intermediate.cert)
    assert self_signed_ambiguity(pki.leaf.cert) is None


def test_same_names_but_other_key_is_not_self_signed(pki):
    # issuer == subject, but signed by the intermediate's key: the [MIG-PS] rule would say self-signed.
    cert = _issue(pki, pki.intermediate.cert.subject)
    assert not is_self_signed(cert)
    values = compute_fic(cert, tenant_id="5f8a1a9f-2e1a-415f-b10c-84c3736a21b9",
                         environment_id="7efcc31a-c410-e20e-9b95-dd448cedf653")
    assert "/i/" in values.subject
    assert any("subject equals its issuer" in w for w in values.warnings)


def test_expired_and_non_code_signing_warnings(pki):
    kw = dict(tenant_id="5f8a1a9f-2e1a-415f-b10c-84c3736a21b9", environment_id="7efcc31a-c410-e20e-9b95-dd448cedf653")
    assert any("expired" in w for w in compute_fic(pki.expired.cert, **kw).warnings)
    assert any("code-signing EKU" in w for w in compute_fic(pki.no_codesigning.cert, **kw).warnings)


def test_sha256_of_der_not_pem(pki):
    # [KT-CN] warning: hash the DER (.cer), never the PEM file bytes.
    values = compute_fic(pki.self_signed.cert, tenant_id="5f8a1a9f-2e1a-415f-b10c-84c3736a21b9",
                         environment_id="7efcc31a-c410-e20e-9b95-dd448cedf653")
    assert values.subject.endswith("/h/" + hashlib.sha256(pki.self_signed.cer.read_bytes()).hexdigest())
    assert not values.subject.endswith(hashlib.sha256(pki.self_signed.pem.read_bytes()).hexdigest())
    assert pki.self_signed.cert.public_bytes(serialization.Encoding.DER) == pki.self_signed.cer.read_bytes()


def test_dn_hash_replaces_lone_surrogates_like_dotnet_utf8():
    # A BMPString may hold a lone surrogate; .NET Encoding.UTF8.GetBytes writes U+FFFD (EF BF BD) for it.
    from ppmi_build.identity.dn import dotnet_name

    dn = dotnet_name(bytes.fromhex("300D310B300906035504031E02D800"))
    assert dn == "CN=\ud800"
    expected = base64.urlsafe_b64encode(hashlib.sha256(b"CN=\xef\xbf\xbd").digest()).decode().rstrip("=")
    assert dn_hash(dn) == expected
