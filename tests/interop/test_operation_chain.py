"""The CMS builder with a key that returns the chain with each signature (Trusted Signing: the leaf can change
between two operations, issue rule "embed the chain returned by the same operation").

A scripted key answers each operation with a chosen leaf. Checked independently: ``openssl cms -verify`` against
the test root, and the NuGet signing-certificate-v2 ``certHash`` compared with SHA-256 of the embedded signer
certificate computed here (RFC 5035 §4), read with asn1crypto as a plain DER parser.
"""

from __future__ import annotations

import hashlib

import pytest
from asn1crypto import cms as acms
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from ppmi_build.errors import SigningCertificateChanged
from ppmi_build.signing.authenticode.sign import build_signature
from ppmi_build.signing.nuget.content import build_author_signature
from tests.conftest import run_tool
from tests.pki import CODE_SIGNING, _name, _rsa, make_cert

pytestmark = pytest.mark.interop


class ScriptedKey:
    """Answers operation n with leaf ``answers[n]`` (an index into ``leaves``); ``read`` is the leaf a caller saw."""

    def __init__(self, leaves, answers, read):
        self.leaves, self.answers, self.read, self.ops = leaves, list(answers), read, 0

    description = "scripted"

    def certificate_chain(self):
        c = self.leaves[self.read]
        return [c.cert, *c.chain]

    def sign_digest(self, digest, algorithm):  # pragma: no cover - the builder must not use it
        raise AssertionError("sign_digest_with_chain must be used")

    def sign_digest_with_chain(self, digest, algorithm):
        c = self.leaves[self.answers[self.ops]]
        self.ops += 1
        return c.key.sign(digest, padding.PKCS1v15(), Prehashed(algorithm)), [c.cert, *c.chain]


@pytest.fixture(scope="module")
def leaves(pki, tmp_path_factory):
    out = tmp_path_factory.mktemp("leaves")
    subject = _name("Contoso Plug-in Signing")
    return [make_cert(f"leaf{i}", subject, _rsa(), issuer, eku=[CODE_SIGNING], out=out)
            for i, issuer in enumerate([pki.intermediate, pki.root, pki.intermediate])]


def _signer(p7s: bytes):
    sd = acms.ContentInfo.load(p7s)["content"]
    si = sd["signer_infos"][0]
    certs = [c.chosen.dump() for c in sd["certificates"]]
    return sd, si, certs


def _ess_cert_hash(si) -> bytes:
    for a in si["signed_attrs"]:
        if a["type"].dotted == "1.2.840.113549.1.9.16.2.47":  # id-aa-signingCertificateV2 (RFC 5035)
            return a["values"][0]["certs"][0]["cert_hash"].native
    raise AssertionError("no signing-certificate-v2")


def _openssl_verify(p7s: bytes, pki, tmp_path) -> None:
    (tmp_path / "s.p7s").write_bytes(p7s)
    r = run_tool("openssl", "cms", "-verify", "-inform", "DER", "-in", tmp_path / "s.p7s", "-CAfile", pki.root_pem,
                 "-purpose", "any", "-out", tmp_path / "content")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(("answers", "read", "embedded", "ops"), [
    ([1, 0], 0, 0, 2),     # alternating issuing CAs: asked again, the leaf read comes back
    ([2, 2, 2], 0, 2, 3),  # renewed: the attributes are built again for the service's current leaf
    ([0], 0, 0, 1),        # unchanged: one operation
])
def test_nuget_signature_names_the_leaf_of_its_own_operation(leaves, pki, tmp_path, answers, read, embedded, ops):
    key = ScriptedKey(leaves, answers, read)
    p7s = build_author_signature(b"Version:1\n\n", key)
    assert key.ops == ops
    _, si, certs = _signer(p7s)
    leaf_der = leaves[embedded].cert.public_bytes(serialization.Encoding.DER)
    assert leaf_der in certs
    assert _ess_cert_hash(si) == hashlib.sha256(leaf_der).digest()
    _openssl_verify(p7s, pki, tmp_path)


def test_a_leaf_that_keeps_changing_is_one_error(leaves):
    key = ScriptedKey(leaves, [1, 2, 1, 2, 1], 0)
    with pytest.raises(SigningCertificateChanged) as e:
        build_author_signature(b"Version:1\n\n", key)
    assert key.ops == 4 and e.value.exit_code == 3
    assert "run the command again" in e.value.message and "\n" not in e.value.message


def test_authenticode_keeps_the_second_operation_with_its_own_chain(leaves):
    key = ScriptedKey(leaves, [1, 2], 0)
    p7s = build_signature(hashlib.sha256(b"image").digest(), key)
    assert key.ops == 2
    _, si, certs = _signer(p7s)
    leaf = leaves[2].cert
    assert leaf.public_bytes(serialization.Encoding.DER) in certs
    assert si["sid"].chosen["serial_number"].native == leaf.serial_number
    signed = b"\x31" + si["signed_attrs"].dump()[1:]  # RFC 5652 §5.4: the SET OF encoding is what was signed
    leaf.public_key().verify(si["signature"].native, signed, padding.PKCS1v15(), hashes.SHA256())
