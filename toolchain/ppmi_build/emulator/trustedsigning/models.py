"""The emulated Trusted Signing (Artifact Signing) service's state: its own PKI and the sign operations
(production-keys §2(b)).

PKI, made on first use per emulator and modelled on the real chain (production-keys §2(b)) under names that are
clearly the emulator's: a root (``PPMI Emulator Identity Verification Root CA 2020``), a code-signing PCA
(``PPMI Emulator ID Verified Code Signing PCA 2021``) and two issuing CAs (``PPMI Emulator ID Verified CS EOC CA
01`` and ``… AOC CA 01``). Each seeded profile (``--signing-profile ACCOUNT/PROFILE="SUBJECT DN"``) gets, per UTC
day and issuing CA, a leaf with that subject, a new RSA-2048 key, valid 72 hours from midnight ("renewed daily and
valid for only 72 hours", concept-trusted-signing-cert-management), EKUs codeSigning and
1.3.6.1.4.1.311.97.1.0 and policy 2.23.140.1.4.1. Without ``rotate_issuers`` every operation uses the EOC CA; with
it, operation *n* uses issuing CA *n* mod 2, the worst case seen in production (AOC CA 04 and EOC CA 04 on
consecutive builds of one profile, Azure/artifact-signing-action#128).

Operations: each sign request makes one; it is ``InProgress`` on the first poll after creation when
``polls_in_progress`` is 1 (the default), then ``Succeeded``. ``POST /_emulator/trusted-signing/next`` makes the
next operations end ``Failed``/``TimedOut``/``NotFound`` or stay ``InProgress`` for ever.
"""

from __future__ import annotations

import base64
import datetime as _dt
import threading
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT_NAME = "PPMI Emulator Identity Verification Root CA 2020"
PCA_NAME = "PPMI Emulator ID Verified Code Signing PCA 2021"
ISSUING_NAMES = ("PPMI Emulator ID Verified CS EOC CA 01", "PPMI Emulator ID Verified CS AOC CA 01")
ORGANIZATION = "ppmi-build emulator"
#: Microsoft's Trusted Signing leaf EKU (production-keys §2(b))
TRUSTED_SIGNING_EKU = x509.ObjectIdentifier("1.3.6.1.4.1.311.97.1.0")
#: the emulator's stand-in for the per-customer "durable identity" EKU 1.3.6.1.4.1.311.97.n.n.n.n
DURABLE_IDENTITY_EKU = x509.ObjectIdentifier("1.3.6.1.4.1.311.97.990.1.1.1")
#: CA/B Forum code-signing policy OID
CODE_SIGNING_POLICY = x509.ObjectIdentifier("2.23.140.1.4.1")
LEAF_LIFETIME = _dt.timedelta(hours=72)
#: ``signatureAlgorithm`` -> hash
ALGORITHMS: dict[str, Callable[[], hashes.HashAlgorithm]] = {"RS256": hashes.SHA256, "RS384": hashes.SHA384,
                                                           "RS512": hashes.SHA512}
OUTCOMES = {"Failed", "TimedOut", "NotFound", "InProgress"}


_DN_KEYS = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
            "L": NameOID.LOCALITY_NAME, "S": NameOID.STATE_OR_PROVINCE_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME,
            "C": NameOID.COUNTRY_NAME, "E": NameOID.EMAIL_ADDRESS, "SERIALNUMBER": NameOID.SERIAL_NUMBER,
            "STREET": NameOID.STREET_ADDRESS, "POSTALCODE": NameOID.POSTAL_CODE}


def parse_dn(text: str) -> x509.Name:
    """A subject DN as written on the command line, most specific first as .NET and RFC 4514 render it
    (``CN=Contoso, O=Contoso, L=Redmond, S=WA, C=US``; ``S=`` and ``ST=`` both name the state; values must not
    contain ``,`` or ``=``). Raises ValueError."""
    attrs = []
    for part in text.split(","):
        key, sep, value = part.partition("=")
        oid = _DN_KEYS.get(key.strip().upper())
        if not sep or oid is None or not value.strip():
            raise ValueError(f"{part.strip()!r} is not KEY=VALUE with KEY one of {', '.join(_DN_KEYS)}")
        attrs.append(x509.NameAttribute(oid, value.strip()))
    return x509.Name([x509.RelativeDistinguishedName([a]) for a in reversed(attrs)])


@dataclass
class _Ca:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey


@dataclass
class Operation:
    id: str
    account: str
    profile: str
    status: str
    polls_left: int
    signature: bytes = b""
    chain: list[x509.Certificate] = field(default_factory=list)
    outcome: str | None = None


class TrustedSigningState:
    """PKI and operations of one emulator (see the module docstring)."""

    def __init__(self, options: dict[str, Any]):
        opts = options.get("trusted_signing") or {}
        self.profiles: dict[tuple[str, str], x509.Name] = {}
        for ref, dn in dict(opts.get("profiles") or {}).items():
            account, _, profile = str(ref).partition("/")
            self.profiles[(account.lower(), profile.lower())] = parse_dn(str(dn))
        self.rotate = bool(opts.get("rotate_issuers"))
        self.polls_in_progress = int(opts.get("polls_in_progress", 1))
        self.lock = threading.RLock()
        self.count = 0
        self.operations: dict[str, Operation] = {}
        self.next_outcomes: list[str] = []
        self._root: _Ca | None = None
        self._pca: _Ca | None = None
        self._issuing: list[_Ca] = []
        self._leaves: dict[tuple[str, str, int, _dt.date], _Ca] = {}

    # --- PKI ----------------------------------------------------------------------------------------------
    def _ensure_cas(self) -> None:
        if self._root is not None:
            return
        now = _dt.datetime.now(_dt.UTC).replace(microsecond=0)
        root_key = _key()
        root = _ca_cert(ROOT_NAME, root_key, None, root_key, now, years=25, path_len=None)
        self._root = _Ca(root, root_key)
        pca_key = _key()
        self._pca = _Ca(_ca_cert(PCA_NAME, pca_key, self._root, root_key, now, years=15, path_len=1), pca_key)
        for name in ISSUING_NAMES:
            k = _key()
            self._issuing.append(_Ca(_ca_cert(name, k, self._pca, pca_key, now, years=5, path_len=0), k))

    def root(self) -> x509.Certificate:
        with self.lock:
            self._ensure_cas()
            assert self._root is not None
            return self._root.cert

    def issuing_cas(self) -> list[x509.Certificate]:
        with self.lock:
            self._ensure_cas()
            return [c.cert for c in self._issuing]

    def leaf(self, account: str, profile: str, ca_index: int, today: _dt.date) -> tuple[_Ca, list[x509.Certificate]]:
        """The leaf of ``account/profile`` for ``today`` under issuing CA ``ca_index`` and its chain (leaf, issuing
        CA, PCA, root)."""
        with self.lock:
            self._ensure_cas()
            assert self._root is not None and self._pca is not None
            issuing = self._issuing[ca_index]
            key = (account, profile, ca_index, today)
            if key not in self._leaves:
                start = _dt.datetime.combine(today, _dt.time(), tzinfo=_dt.UTC)
                k = _key()
                subject = self.profiles[(account, profile)]
                cert = (_builder(subject, issuing.cert.subject, k, start, start + LEAF_LIFETIME)
                        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                                       critical=True)
                        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING, TRUSTED_SIGNING_EKU,
                                                              DURABLE_IDENTITY_EKU]), critical=False)
                        .add_extension(x509.CertificatePolicies([x509.PolicyInformation(CODE_SIGNING_POLICY, None)]),
                                       critical=False)
                        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuing.key.public_key()),
                                       critical=False)
                        .sign(issuing.key, hashes.SHA256()))
                self._leaves[key] = _Ca(cert, k)
            leaf = self._leaves[key]
            return leaf, [leaf.cert, issuing.cert, self._pca.cert, self._root.cert]

    # --- operations -----------------------------------------------------------------------------------------
    def start(self, account: str, profile: str, algorithm: str, digest: bytes) -> Operation:
        """Make one sign operation (signed at once; the result is shown once the polls allow it)."""
        with self.lock:
            index = self.count % len(ISSUING_NAMES) if self.rotate else 0
            self.count += 1
            outcome = self.next_outcomes.pop(0) if self.next_outcomes else None
            op = Operation(str(uuid.uuid4()), account, profile, "InProgress", self.polls_in_progress, outcome=outcome)
            if outcome is None:
                leaf, chain = self.leaf(account, profile, index, _dt.datetime.now(_dt.UTC).date())
                op.signature = leaf.key.sign(digest, padding.PKCS1v15(), Prehashed(ALGORITHMS[algorithm]()))
                op.chain = chain
            self.operations[op.id] = op
            return op

    def poll(self, op: Operation) -> None:
        """Advance ``op`` by one poll."""
        with self.lock:
            if op.status != "InProgress":
                return
            if op.polls_left > 0:
                op.polls_left -= 1
                return
            if op.outcome == "InProgress":
                return
            op.status = op.outcome or "Succeeded"


_STATES: weakref.WeakKeyDictionary[Any, TrustedSigningState] = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def state_of(emulator_state: Any) -> TrustedSigningState:
    """The Trusted Signing state of an emulator (made from ``emulator_state.options`` on first use)."""
    with _STATES_LOCK:
        found = _STATES.get(emulator_state)
        if found is None:
            found = TrustedSigningState(getattr(emulator_state, "options", {}) or {})
            _STATES[emulator_state] = found
        return found


def signing_certificate(chain: list[x509.Certificate]) -> str:
    """``signingCertificate`` as the service sends it: base64 of the base64 text (76-character CRLF lines) of a DER
    PKCS#7 certs-only SignedData (production-keys §2(b))."""
    from cryptography.hazmat.primitives.serialization import pkcs7

    der = pkcs7.serialize_certificates(chain, serialization.Encoding.DER)
    text = base64.encodebytes(der).replace(b"\n", b"\r\n")
    return base64.b64encode(text).decode("ascii")


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# --- certificate helpers -------------------------------------------------------------------------------------

def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(subject: x509.Name, issuer: x509.Name, key: rsa.RSAPrivateKey, start: _dt.datetime,
             end: _dt.datetime) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))


def _ca_cert(cn: str, key: rsa.RSAPrivateKey, issuer: _Ca | None, issuer_key: rsa.RSAPrivateKey,
             now: _dt.datetime, *, years: int, path_len: int | None) -> x509.Certificate:
    subject = _name(cn)
    b = (_builder(subject, issuer.cert.subject if issuer else subject, key, now - _dt.timedelta(days=1),
                  now + _dt.timedelta(days=365 * years))
         .add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
         .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True))
    if issuer is not None:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                            critical=False)
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())
