"""Signing with a certificate whose name .NET reads but cryptography cannot parse (a TeletexString with 8-bit
bytes: dotnet/runtime ``X500DistinguishedNameTests.T61Cases``), through the Authenticode and NuGet signers.

The CMS builder must not parse the certificate's names (it compares the DER of issuer and subject); the outputs
are checked by independent verifiers: ``osslsigncode verify`` and ``openssl cms -verify``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ppmi_build.signing import chain as chain_mod
from ppmi_build.signing import cms
from ppmi_build.signing.authenticode.sign import sign_pe
from ppmi_build.signing.keys import LocalKey
from ppmi_build.signing.nuget import sign as nuget_sign
from tests import der_certs as d
from tests.conftest import require_tool, run_tool
from tests.nupkg_builder import build_nupkg

pytestmark = pytest.mark.interop

#: dotnet/runtime X500DistinguishedNameTests.T61Cases: "L=Â¢ø" as a T61String with 8-bit bytes
T61_NAME = bytes.fromhex("300E310C300A06035504071403C2A2F8")


@pytest.fixture()
def t61_key(tmp_path) -> tuple[LocalKey, Path]:
    der = d.certificate(T61_NAME, T61_NAME, [d.CODE_SIGNING_EKU])
    cert = x509.load_der_x509_certificate(der)
    with pytest.raises(ValueError):
        cert.subject  # noqa: B018 - the premise: cryptography cannot parse this name
    pem = tmp_path / "t61.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return LocalKey(d.key(), [cert], "t61.pfx"), pem


def test_authenticode_signature_with_a_t61_named_signer(t61_key, plain_dll, tmp_path):
    require_tool("osslsigncode")
    key, pem = t61_key
    out = tmp_path / "a.signed.dll"
    sign_pe(plain_dll, out, key)
    r = run_tool("osslsigncode", "verify", "-in", out, "-CAfile", pem)
    assert r.returncode == 0 and "Signature verification: ok" in r.stdout, r.stdout + r.stderr


def test_nuget_signature_with_a_t61_named_signer(t61_key, plain_dll, tmp_path):
    require_tool("openssl")
    key, pem = t61_key
    pkg = build_nupkg(tmp_path / "Contoso.Plugins.1.0.0.nupkg", dlls=[plain_dll])
    out = tmp_path / "signed" / pkg.name
    out.parent.mkdir()
    nuget_sign.sign_package(pkg, out, key)
    with zipfile.ZipFile(out) as z:
        p7s = z.read(".signature.p7s")
    (tmp_path / "sig.p7s").write_bytes(p7s)
    r = run_tool("openssl", "cms", "-verify", "-inform", "DER", "-in", tmp_path / "sig.p7s", "-CAfile", pem,
                 "-purpose", "any", "-out", tmp_path / "content.txt")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "content.txt").read_bytes().startswith(b"Version:1\n\n")


def test_self_issued_compares_the_der_names(t61_key):
    key, _ = t61_key
    assert cms.is_self_issued(key.chain[0])
    # the chain validator names the certificate as .NET does (X500DistinguishedNameTests.T61Cases: "L=Â¢ø")
    with pytest.raises(chain_mod.ChainError, match="L=Â¢ø"):
        chain_mod.verify_chain(key.chain[0], [], [key.chain[0]], eku=x509.ObjectIdentifier("1.3.6.1.5.5.7.3.8"))
