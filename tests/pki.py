"""Test PKI built with `cryptography` (not with ppmi-build code): a root CA, an intermediate,
a code-signing leaf (with SKI), a TSA certificate (critical timeStamping EKU), a self-signed
code-signing certificate, and the bad certificates the refusal tests need.

Every certificate is written as PEM (``<name>.pem``), DER (``<name>.cer``), its key as PEM
(``<name>.key``, unencrypted) and, for end-entity certificates, as a PFX (``<name>.pfx``)
protected with :data:`PFX_PASSWORD` and holding the chain.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PFX_PASSWORD = "correct horse battery staple"
NOW = dt.datetime.now(dt.UTC)
CODE_SIGNING = ExtendedKeyUsageOID.CODE_SIGNING
LIFETIME_SIGNING = x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.13")


@dataclass
class Cert:
    name: str
    cert: x509.Certificate
    key: object
    chain: list[x509.Certificate]  # issuers, nearest first (no root for leaves issued by the root)
    dir: Path

    @property
    def pem(self) -> Path:
        return self.dir / f"{self.name}.pem"

    @property
    def cer(self) -> Path:
        return self.dir / f"{self.name}.cer"

    @property
    def keyfile(self) -> Path:
        return self.dir / f"{self.name}.key"

    @property
    def pfx(self) -> Path:
        return self.dir / f"{self.name}.pfx"

    @property
    def chain_pem(self) -> Path:
        """Leaf + intermediates as one PEM file."""
        return self.dir / f"{self.name}-chain.pem"

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


@dataclass
class Pki:
    dir: Path
    root: Cert
    intermediate: Cert
    leaf: Cert  # code signing, SKI, issued by intermediate
    leaf_no_ski: Cert  # code signing, no SKI extension, issued by root
    tsa: Cert  # critical timeStamping EKU, issued by root
    self_signed: Cert  # self-signed code-signing certificate (development)
    expired: Cert
    not_yet_valid: Cert
    no_codesigning: Cert  # EKU serverAuth only
    weak: Cert  # RSA 1024
    lifetime: Cert  # codeSigning + lifetime signing EKU
    ec: Cert  # ECDSA P-256 code signing
    extra: dict[str, Cert] = field(default_factory=dict)

    @property
    def root_pem(self) -> Path:
        return self.root.pem


def _name(cn: str, org: str | None = "ppmi-build tests") -> x509.Name:
    attrs = []
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _rsa(bits: int = 2048):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def make_cert(
    name: str,
    subject: x509.Name,
    key,
    issuer: Cert | None,
    *,
    ca: bool = False,
    eku: list[x509.ObjectIdentifier] | None = None,
    eku_critical: bool = False,
    ski: bool = True,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    out: Path,
) -> Cert:
    issuer_name = issuer.cert.subject if issuer else subject
    signing_key = issuer.key if issuer else key
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - dt.timedelta(days=1))
        .not_valid_after(not_after or NOW + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        b = b.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        b = b.add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=eku_critical)
    if ski:
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if issuer is not None:
        b = b.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    cert = b.sign(signing_key, hashes.SHA256())
    chain = ([issuer.cert] + issuer.chain) if issuer else []
    # drop the self-signed root from the chain we ship with leaves
    chain = [c for c in chain if c.subject != c.issuer]
    c = Cert(name, cert, key, chain, out)
    c.pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    c.cer.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    c.keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    c.chain_pem.write_bytes(b"".join(x.public_bytes(serialization.Encoding.PEM) for x in [cert, *chain]))
    if not ca:
        c.pfx.write_bytes(
            pkcs12.serialize_key_and_certificates(
                name.encode(),
                key,
                cert,
                chain or None,
                serialization.BestAvailableEncryption(PFX_PASSWORD.encode()),
            )
        )
    return c


def make_pki(out: Path) -> Pki:
    out.mkdir(parents=True, exist_ok=True)
    root = make_cert("root", _name("ppmi-build Test Root CA"), _rsa(), None, ca=True, out=out)
    inter = make_cert("intermediate", _name("ppmi-build Test Code Signing CA"), _rsa(), root, ca=True, out=out)
    leaf = make_cert("leaf", _name("Contoso Plug-in Signing"), _rsa(), inter, eku=[CODE_SIGNING], out=out)
    leaf_no_ski = make_cert("leaf-no-ski", _name("Contoso No SKI"), _rsa(), root, eku=[CODE_SIGNING], ski=False,
                            out=out)
    tsa = make_cert(
        "tsa", _name("ppmi-build Test TSA"), _rsa(), root,
        eku=[ExtendedKeyUsageOID.TIME_STAMPING], eku_critical=True, out=out,
    )
    ss_key = _rsa(3072)
    self_signed = make_cert(
        "self-signed",
        x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, "Contoso Dev"),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "dev@contoso.example"),
        ]),
        ss_key, None, eku=[CODE_SIGNING], out=out,
    )
    expired = make_cert(
        "expired", _name("Contoso Expired"), _rsa(), root, eku=[CODE_SIGNING],
        not_before=NOW - dt.timedelta(days=400), not_after=NOW - dt.timedelta(days=5), out=out,
    )
    nyv = make_cert(
        "not-yet-valid", _name("Contoso Future"), _rsa(), root, eku=[CODE_SIGNING],
        not_before=NOW + dt.timedelta(days=5), not_after=NOW + dt.timedelta(days=400), out=out,
    )
    no_cs = make_cert("server-auth", _name("Contoso Web"), _rsa(), root, eku=[ExtendedKeyUsageOID.SERVER_AUTH], out=out)
    weak = make_cert("weak-1024", _name("Contoso Weak"), _rsa(1024), root, eku=[CODE_SIGNING], out=out)
    lifetime = make_cert("lifetime", _name("Contoso Lifetime"), _rsa(), root, eku=[CODE_SIGNING, LIFETIME_SIGNING],
                         out=out)
    ec_cert = make_cert("ecdsa", _name("Contoso EC"), ec.generate_private_key(ec.SECP256R1()), root,
                        eku=[CODE_SIGNING], out=out)
    (out / "root-and-tsa.pem").write_bytes(root.pem.read_bytes() + tsa.pem.read_bytes())
    return Pki(out, root, inter, leaf, leaf_no_ski, tsa, self_signed, expired, nyv, no_cs, weak, lifetime, ec_cert)
