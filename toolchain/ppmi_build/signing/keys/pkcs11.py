"""A signing key on a PKCS#11 token (smart card, USB token, HSM), named by an RFC 7512 ``pkcs11:`` URI.

Uses python-pkcs11 (a Cython binding of the PKCS#11 v2.40 C API). The module (the vendor's ``.so``/``.dll``)
comes from the URI's ``module-path`` query attribute, else ``PPMI_PKCS11_MODULE``. The user PIN comes from the
environment variable named by ``--pin-env`` (default ``PPMI_PKCS11_PIN``), else a hidden prompt when stdin is a
terminal; it is never a command-line value and never appears in output or messages.

The token is the one slot whose token matches every token/slot attribute of the URI; the key is the private key
object with the URI's ``object`` (CKA_LABEL) and/or ``id`` (CKA_ID). The certificate is the certificate object
with the same CKA_ID as the key (else the same CKA_LABEL); other certificate objects on the token that issue it
(and the certificates of ``--cert-chain FILE``) follow it as the chain.

Mechanism: ``CKM_RSA_PKCS`` (PKCS#11 v2.40 Current Mechanisms §2.1.6, RSASSA-PKCS1-v1_5 over the input as
given) with the DER ``DigestInfo`` of RFC 8017 §9.2 prepended here. Not ``CKM_SHA256_RSA_PKCS`` (§2.1.8),
which hashes on the token: Authenticode and NuGet sign a digest the signer computes over the signed attributes
(RFC 5652 §5.4), the ``KeySource`` protocol hands over that digest, many smart cards and PIV tokens implement only
the raw ``CKM_RSA_PKCS`` (hashing happens on the host), and sending 32-64 bytes instead of the message keeps the
token's slow link out of the cost. The digest is computed once, by the caller.

One session is opened and logged in per key source (per process); signing is serialised with a lock, so one
source can serve a batch signed from several threads (PKCS#11 v2.40 Base §5.1.4: one operation per session at
a time).

Errors: wrong PIN (CKR_PIN_INCORRECT), locked or expired PIN, no matching token, no such key or certificate,
a non-RSA key -> :class:`~ppmi_build.errors.TokenError` (exit 2); a module that cannot be loaded or a device
failure -> :class:`~ppmi_build.errors.TokenDeviceError` (exit 3).
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from ...errors import KeyUriError, TokenDeviceError, TokenError
from ...identity.certificates import certificate_problem
from ...identity.dn import certificate_name_ders
from .uri import Pkcs11Uri

#: Environment variable holding the user PIN by default (``--pin-env`` names another one).
PIN_ENV_DEFAULT = "PPMI_PKCS11_PIN"
#: Environment variable naming the PKCS#11 module when the URI has no ``module-path``.
MODULE_ENV = "PPMI_PKCS11_MODULE"

#: DER DigestInfo prefixes, RFC 8017 §9.2 note 1 (the digest follows).
DIGEST_INFO_PREFIX: dict[str, bytes] = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}


@dataclass
class PinSource:
    """Where the user PIN comes from: the variable ``env`` (``--pin-env``), else ``PPMI_PKCS11_PIN``, else a hidden
    prompt when ``interactive`` and stdin is a terminal. ``environ`` defaults to ``os.environ``."""

    env: str | None = None
    interactive: bool = True
    environ: Mapping[str, str] | None = field(default=None, repr=False)

    def resolve(self, token_label: str) -> str:
        """The PIN. Raises TokenError (exit 2) when none can be had; the message never holds a PIN."""
        env = os.environ if self.environ is None else self.environ
        if self.env:
            value = env.get(self.env)
            if value is None:
                raise TokenError(f"environment variable {self.env} (from --pin-env) is not set; export it with the "
                                 f"user PIN of token {token_label!r}")
            return value
        if env.get(PIN_ENV_DEFAULT) is not None:
            return env[PIN_ENV_DEFAULT]
        if self.interactive and sys.stdin.isatty():
            import click

            return str(click.prompt(f"PIN for token {token_label!r}", hide_input=True, err=True))
        raise TokenError(f"no PIN for token {token_label!r}: set {PIN_ENV_DEFAULT} (or the variable named by "
                         "--pin-env), or run in a terminal to be asked")


def digest_info(digest: bytes, algorithm: hashes.HashAlgorithm) -> bytes:
    """RFC 8017 §9.2 step 2: ``DigestInfo ::= SEQUENCE { digestAlgorithm, digest OCTET STRING }`` in DER.

    Raises:
        ValueError: an algorithm other than SHA-256/384/512, or a digest of the wrong length.
    """
    prefix = DIGEST_INFO_PREFIX.get(algorithm.name)
    if prefix is None:
        raise ValueError(f"no DigestInfo for {algorithm.name}; use sha256, sha384 or sha512")
    if len(digest) != algorithm.digest_size:
        raise ValueError(f"a {algorithm.name} digest is {algorithm.digest_size} bytes, not {len(digest)}")
    return prefix + digest


def _label(value: Any) -> str:
    return (value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")).rstrip(" \0")


def _token_matches(uri: Pkcs11Uri, slot: Any, token: Any) -> bool:
    checks = (
        (uri.slot_id, slot.slot_id),
        (uri.slot_description, _label(getattr(slot, "slot_description", ""))),
        (uri.slot_manufacturer, _label(getattr(slot, "manufacturer_id", ""))),
        (uri.token, _label(token.label)),
        (uri.manufacturer, _label(token.manufacturer_id)),
        (uri.serial, _label(token.serial)),
        (uri.model, _label(token.model)),
    )
    return all(want is None or want == got for want, got in checks)


def _issuer(cert: x509.Certificate) -> bytes:
    return certificate_name_ders(cert)[0]  # DER as on the wire (cert.issuer re-parses with stricter rules)


def _subject(cert: x509.Certificate) -> bytes:
    return certificate_name_ders(cert)[1]


def _issuers(leaf: x509.Certificate, pool: list[x509.Certificate]) -> list[x509.Certificate]:
    """Certificates of ``pool`` that form ``leaf``'s issuer chain, in order (unrelated ones are left out)."""
    chain: list[x509.Certificate] = []
    current = leaf
    rest = [c for c in pool if c != leaf]
    while True:
        nxt = next((c for c in rest if _subject(c) == _issuer(current) and _subject(c) != _subject(current)), None)
        if nxt is None:
            return chain
        chain.append(nxt)
        rest.remove(nxt)
        current = nxt


class Pkcs11Key:
    """A :class:`~ppmi_build.signing.keys.KeySource` backed by a private key object on a PKCS#11 token.

    Use :func:`open_key`; the session stays logged in until :meth:`close` or the end of the process.
    """

    def __init__(self, uri: Pkcs11Uri, session: Any, key: Any, chain: list[x509.Certificate], token_label: str):
        self.uri = uri
        self._session = session
        self._key = key
        self._chain = chain
        self._token_label = token_label
        self._lock = threading.Lock()
        # the last session closed logs the application out (C_CloseSession): when this source is dropped
        self._finalizer = weakref.finalize(self, _close_quietly, session)

    @property
    def description(self) -> str:
        return self.uri.text

    @property
    def certificate(self) -> x509.Certificate:
        return self._chain[0]

    def certificate_chain(self) -> list[x509.Certificate]:
        return list(self._chain)

    def sign_digest(self, digest: bytes, algorithm: hashes.HashAlgorithm) -> bytes:
        """RSASSA-PKCS1-v1_5 signature (key size / 8 bytes) of ``digest`` made with CKM_RSA_PKCS over its DigestInfo.

        Raises:
            TokenDeviceError (exit 3): the token failed or the session was lost (e.g. the token was removed).
        """
        from pkcs11 import Mechanism
        from pkcs11.exceptions import PKCS11Error

        data = digest_info(digest, algorithm)
        with self._lock:
            try:
                return bytes(self._key.sign(data, mechanism=Mechanism.RSA_PKCS))
            except PKCS11Error as e:
                raise TokenDeviceError(f"token {self._token_label!r} failed to sign with {self.uri.text} "
                                       f"({type(e).__name__}); check that the token is still connected") from None

    def close(self) -> None:
        """Close the session (idempotent); the token logs the application out when its last session closes."""
        self._session = None
        self._finalizer()


def _close_quietly(session: Any) -> None:
    try:
        session.close()
    except Exception:  # noqa: BLE001 - closing a session the token already dropped
        pass


def _load_module(path: str) -> Any:
    try:
        import pkcs11
        from pkcs11.exceptions import PKCS11Error
    except ImportError as e:  # installed without its dependencies
        raise TokenDeviceError(f"the PKCS#11 binding python-pkcs11 cannot be imported ({e}); "
                               "install it: pip install 'python-pkcs11>=0.10'") from None

    try:
        return pkcs11.lib(path)
    except (PKCS11Error, OSError) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise TokenDeviceError(f"cannot load the PKCS#11 module {path}: {reason}; check module-path in the URI or "
                               f"{MODULE_ENV}") from None


def _find_token(uri: Pkcs11Uri, lib: Any, module: str) -> Any:
    from pkcs11.exceptions import PKCS11Error

    try:
        slots = lib.get_slots(token_present=True)
        found = [(s, s.get_token()) for s in slots]
    except PKCS11Error as e:
        raise TokenDeviceError(f"the PKCS#11 module {module} cannot list its tokens ({type(e).__name__}); "
                               "check that the device is connected") from None
    matches = [t for s, t in found if _token_matches(uri, s, t)]
    if not matches:
        present = ", ".join(repr(_label(t.label)) for _, t in found if _label(t.label)) or "none"
        raise TokenError(f"no token matches {uri.text} in {module} (tokens present: {present}); check token= "
                         "(pkcs11-tool --module MODULE --list-token-slots)")
    if len(matches) > 1:
        raise TokenError(f"{len(matches)} tokens match {uri.text}; add serial=... or slot-id=... to the URI")
    return matches[0]


def _login(token: Any, pin: str, label: str) -> Any:
    from pkcs11 import exceptions as ex

    try:
        return token.open(user_pin=pin)
    except ex.UserAlreadyLoggedIn:
        # the login state belongs to the application, not the session (PKCS#11 v2.40 Base §5.6, C_Login): another
        # key source of this process is logged in to the token, so a plain session is already authorised
        try:
            return token.open()
        except ex.PKCS11Error as e:
            raise TokenDeviceError(f"cannot open a session on token {label!r} ({type(e).__name__})") from None
    except ex.PinIncorrect:
        raise TokenError(f"wrong PIN for token {label!r} (CKR_PIN_INCORRECT); check the variable named by "
                         f"--pin-env (default {PIN_ENV_DEFAULT}); the token locks after a few wrong PINs") from None
    except ex.PinLocked:
        raise TokenError(f"the user PIN of token {label!r} is locked (CKR_PIN_LOCKED); unlock it with the "
                         "security officer PIN (e.g. pkcs11-tool --init-pin --login --login-type so)") from None
    except ex.PinExpired:
        raise TokenError(f"the user PIN of token {label!r} has expired (CKR_PIN_EXPIRED); change it with the "
                         "token's tool (e.g. pkcs11-tool --change-pin)") from None
    except (ex.PinInvalid, ex.PinLenRange):
        raise TokenError(f"the PIN given for token {label!r} has invalid characters or length "
                         "(CKR_PIN_INVALID/CKR_PIN_LEN_RANGE); check the variable named by --pin-env") from None
    except ex.PKCS11Error as e:
        raise TokenDeviceError(f"cannot log in to token {label!r} ({type(e).__name__}); check that the device is "
                               "connected and not in use by another program") from None


def _find_key(uri: Pkcs11Uri, session: Any, label: str) -> Any:
    from pkcs11 import KeyType, ObjectClass
    from pkcs11 import exceptions as ex

    what = " and ".join(p for p in (f"label {uri.object!r}" if uri.object is not None else "",
                                    f"id {uri.id.hex()}" if uri.id is not None else "") if p)
    try:
        key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=uri.object, id=uri.id)
    except ex.NoSuchKey:
        raise TokenError(f"no private key with {what} on token {label!r}; list the objects with pkcs11-tool "
                         "--module MODULE --login --list-objects") from None
    except ex.MultipleObjectsReturned:
        raise TokenError(f"several private keys with {what} on token {label!r}; add id=%XX to the URI") from None
    except ex.PKCS11Error as e:
        raise TokenDeviceError(f"cannot search token {label!r} ({type(e).__name__})") from None
    if key.key_type != KeyType.RSA:
        kind = "EC" if key.key_type == KeyType.EC else key.key_type.name
        raise TokenError(f"the key {uri.text} is {kind}; Authenticode/NuGet signing here needs RSA (>= 2048 bits)")
    return key


def _certificates(session: Any) -> list[tuple[bytes, str, x509.Certificate]]:
    """``(CKA_ID, CKA_LABEL, certificate)`` of every X.509 certificate object on the token."""
    from pkcs11 import Attribute, ObjectClass

    out = []
    for obj in session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE}):
        try:
            cert = x509.load_der_x509_certificate(bytes(obj[Attribute.VALUE]))
        except (ValueError, KeyError, TypeError):
            continue
        if certificate_problem(cert):  # a corrupt certificate object is skipped like an unreadable one
            continue
        try:
            cid = bytes(obj[Attribute.ID])
        except Exception:  # noqa: BLE001 - CKA_ID is optional on certificate objects
            cid = b""
        try:
            clabel = _label(obj[Attribute.LABEL])
        except Exception:  # noqa: BLE001 - CKA_LABEL is optional
            clabel = ""
        out.append((cid, clabel, cert))
    return out


def _leaf(uri: Pkcs11Uri, key: Any, certs: list[tuple[bytes, str, x509.Certificate]], label: str) -> x509.Certificate:
    from pkcs11 import Attribute

    try:
        key_id = bytes(key[Attribute.ID])
    except Exception:  # noqa: BLE001 - CKA_ID is optional
        key_id = b""
    try:
        key_label = _label(key[Attribute.LABEL])
    except Exception:  # noqa: BLE001
        key_label = uri.object or ""
    same = [c for cid, _, c in certs if key_id and cid == key_id] or [
        c for _, clabel, c in certs if key_label and clabel == key_label]
    try:
        modulus = int.from_bytes(bytes(key[Attribute.MODULUS]), "big")
    except Exception:  # noqa: BLE001 - some tokens do not expose the modulus of a private key
        modulus = None
    if modulus is not None:
        same = [c for c in same if isinstance(c.public_key(), rsa.RSAPublicKey)
                and c.public_key().public_numbers().n == modulus]  # type: ignore[union-attr]
    if not same:
        raise TokenError(f"token {label!r} holds no certificate for the key {uri.text} (a certificate object with "
                         "the same id or label); import it with pkcs11-tool --write-object cert.der --type cert "
                         "--id ID --label LABEL")
    return same[0]


def open_key(uri: Pkcs11Uri, *, pin: PinSource | None = None, cert_chain: list[x509.Certificate] | None = None,
             environ: Mapping[str, str] | None = None) -> Pkcs11Key:
    """Load the module, find the token, log in and find the key and its certificate.

    Args:
        uri: the parsed ``pkcs11:`` URI.
        pin: where the PIN comes from (default: ``PPMI_PKCS11_PIN``, else a prompt on a terminal).
        cert_chain: intermediates to add after those found on the token (``--cert-chain FILE``).
        environ: the environment for ``PPMI_PKCS11_MODULE`` (default ``os.environ``).
    Returns:
        :class:`Pkcs11Key`, logged in, chain leaf first.
    Raises:
        KeyUriError (exit 2): no module named. TokenError (exit 2): PIN, token, key or certificate problem.
        TokenDeviceError (exit 3): the module cannot be loaded or the device failed.
    """
    env = os.environ if environ is None else environ
    module = uri.module_path or env.get(MODULE_ENV)
    if not module:
        hint = (f"module-name={uri.module_name} is not searched for; " if uri.module_name else "")
        raise KeyUriError(f"{hint}no PKCS#11 module for {uri.text}: add ?module-path=/path/to/module.so to the URI "
                          f"or set {MODULE_ENV}")
    lib = _load_module(module)
    token = _find_token(uri, lib, module)
    label = _label(token.label)
    pin = pin or PinSource(environ=environ)
    session = _login(token, pin.resolve(label), label)
    try:
        key = _find_key(uri, session, label)
        certs = _certificates(session)
        leaf = _leaf(uri, key, certs, label)
        pool = [c for _, _, c in certs] + list(cert_chain or [])
        chain = [leaf, *_issuers(leaf, pool)]
        chain += [c for c in (cert_chain or []) if c not in chain]
    except BaseException:
        session.close()
        raise
    return Pkcs11Key(uri, session, key, chain, label)
