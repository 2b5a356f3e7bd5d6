"""``cert show`` and ``fic`` on certificates whose names ``cryptography`` cannot parse but .NET renders.

Expected strings and the name DER are copied from dotnet/runtime
``src/libraries/System.Security.Cryptography/tests/X509Certificates/X500DistinguishedNameTests.cs``
(test name next to each vector; the same file ``tests/interop/test_dn.py`` checks the renderer with).
The certificates around the names are written byte by byte (:mod:`tests.der_certs`), since
``cryptography``'s builder refuses these names. .NET's ``X509Certificate2.Subject``/``.Issuer`` are
``X500DistinguishedName.Name`` (``Decode(Reversed)``); for a one-RDN name that is the ``Decode(None)``
string the non-string tests assert.
"""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from tests import der_certs as d

TENANT = "5f8a1a9f-2e1a-415f-b10c-84c3736a21b9"
ENV_ID = "7efcc31a-c410-e20e-9b95-dd448cedf653"
PLAIN = d.utf8_cn("Plain")  # issuer/subject partner: CN=Plain

# X500DistinguishedNameTests.T61Cases (test T61Strings asserts dn.Name): (expected, Name DER)
T61_CASES = [
    ("CN=GrapeCity inc., OU=Tools Development, O=GrapeCity inc., L=Sendai Izumi-ku, S=Miyagi, C=JP",
     "308186310b3009060355040613024a50310f300d060355040813064d69796167"
     "69311830160603550407130f53656e64616920497a756d692d6b753117301506"
     "0355040a140e47726170654369747920696e632e311a3018060355040b141154"
     "6f6f6c7320446576656c6f706d656e74311730150603550403140e4772617065"
     "4369747920696e632e"),
    ("SERIALNUMBER=CVR:13471967-UID:121212121212, E=vhm@use.test.dk, "
     "CN=Hedeby's M\u00f8belhandel - Salgsafdelingen, O=Hedeby's M\u00f8belhandel // CVR:13471967, C=DK",
     "3081B5310B300906035504061302444B312D302B060355040A14244865646562"
     "792773204DF862656C68616E64656C202F2F204356523A313334373139363731"
     "2F302D060355040314264865646562792773204DF862656C68616E64656C202D"
     "2053616C6773616664656C696E67656E311E301C06092A864886F70D01090116"
     "0F76686D407573652E746573742E646B312630240603550405131D4356523A31"
     "333437313936372D5549443A313231323132313231323132"),
    ("C=\u00a2", "300D310B300906035504061402C2A2"),  # valid UTF-8 in a T61String is read as UTF-8
    ("L=\u00c2\u00a2\u00f8", "300E310C300A06035504071403C2A2F8"),  # invalid UTF-8 -> ISO 8859-1
]

# X500DistinguishedNameTests.Format_ComponentWithNonStringContent: (OID, AttributeValue hex, expected)
NON_STRING_CASES = [
    ("2.5.4.3", "3000", "CN=#3000"),
    ("2.5.4.5", "0603550406", "SERIALNUMBER=#0603550406"),
    ("0.0", "31020500", "OID.0.0=#31020500"),
    ("2.5.4.3", "04023000", "CN=#3000"),  # OCTET STRING is implicitly stripped
    ("2.5.4.3", "0303003000", "CN=#0303003000"),  # BIT STRING is not implicitly stripped
    ("2.5.4.8", "0500", "S=#0500"),
    ("2.5.4.8", "0101FF", "S=#0101FF"),
]


def _h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def _no_traceback(r) -> None:
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr


def _show(cli, tmp_path, cert_der: bytes, name: str = "c.cer") -> dict:
    path = tmp_path / name
    path.write_bytes(cert_der)
    r = cli("cert", "show", path, "--json")
    _no_traceback(r)
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("expected,der", T61_CASES)
def test_t61_subject_and_issuer_render_as_dotnet(cli, tmp_path, expected, der):
    assert _show(cli, tmp_path, d.certificate(PLAIN, _h(der)))["subject"] == expected
    assert _show(cli, tmp_path, d.certificate(_h(der), PLAIN), "i.cer")["issuer"] == expected


@pytest.mark.parametrize("oid,value,expected", NON_STRING_CASES)
def test_non_string_attribute_renders_as_dotnet(cli, tmp_path, oid, value, expected):
    rec = _show(cli, tmp_path, d.certificate(PLAIN, d.name([[(oid, _h(value))]])))
    assert rec["subject"] == expected and rec["issuer"] == "CN=Plain"
    assert rec["notes"] and "not a character string" in rec["notes"][0]


def test_bit_string_issuer_attribute_is_shown_with_a_note(cli, tmp_path):
    # The hostile-input case: an issuer that holds a BIT STRING attribute (cryptography: TypeError).
    path = tmp_path / "bitstring-issuer.cer"
    path.write_bytes(d.certificate(d.name([[("2.5.4.3", _h("0303003000"))]]), PLAIN))
    r = cli("cert", "show", path)
    _no_traceback(r)
    assert r.exit_code == 0
    assert "Issuer:             CN=#0303003000" in r.stdout.splitlines()
    assert "note: the issuer attribute CN holds a BIT STRING" in r.stderr


def test_fic_v2_hashes_the_dotnet_string_of_a_t61_name(cli, tmp_path):
    # v2 subject = .../i/{base64url(SHA-256(UTF-8(Issuer)))}/s/{... (Subject)} (domain-spec §1.2, [MS-V2]);
    # the strings are .NET's (T61Strings), the hash is computed here from the documented formula.
    issuer_expected, issuer_der = T61_CASES[1]
    subject_expected, subject_der = T61_CASES[3]
    path = tmp_path / "t61.cer"
    path.write_bytes(d.certificate(_h(issuer_der), _h(subject_der), [d.CODE_SIGNING_EKU]))
    r = cli("fic", "--cert", path, "--tenant-id", TENANT, "--environment-id", ENV_ID, "--json")
    _no_traceback(r)
    assert r.exit_code == 0, r.stderr

    def h(s: str) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(s.encode()).digest()).decode().rstrip("=")

    out = json.loads(r.stdout)
    assert out["subject"].endswith(f"/i/{h(issuer_expected)}/s/{h(subject_expected)}")
    assert out["certificate"]["subject"] == subject_expected


def test_name_dotnet_cannot_decode_is_one_line_naming_the_attribute(cli, tmp_path):
    # A UTF8String that is not UTF-8: .NET's decoder gives "" (X500DistinguishedNameTests.PrintInvalidEncoding,
    # "Windows compat"); a FIC hash of "" would be silently wrong, so cert show refuses, naming the attribute.
    bad = d.name([[("2.5.4.10", d.tlv(0x0C, b"ok"))], [("2.5.4.3", d.tlv(0x0C, b"\xff\xfe"))]])
    path = tmp_path / "bad-utf8.cer"
    path.write_bytes(d.certificate(PLAIN, bad))
    r = cli("cert", "show", path)
    _no_traceback(r)
    assert r.exit_code == 2
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}: the certificate is corrupt: its subject cannot be rendered")
    assert "attribute CN (2.5.4.3)" in line and "UTF8String" in line
