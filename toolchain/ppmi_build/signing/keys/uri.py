"""Key URIs: the value of ``--key URI`` and ``[signing] key = "URI"``.

Three forms, one per key source (the scheme picks the module that opens it):

* ``pkcs11:token=T;object=K?module-path=/usr/lib/softhsm/libsofthsm2.so`` - a key on a PKCS#11 token, RFC 7512.
  Path attributes (§2.3): ``token``, ``manufacturer``, ``serial``, ``model``, ``library-manufacturer``,
  ``library-description``, ``library-version``, ``object``, ``type``, ``id`` (percent-encoded bytes),
  ``slot-manufacturer``, ``slot-description``, ``slot-id`` (decimal); vendor attributes ``x-...`` are ignored.
  Query attributes: ``module-path``, ``module-name``. ``pin-value`` and ``pin-source`` are refused: a PIN in a
  command line or a configuration file is visible to other users (process list, shell history), so the PIN
  comes from an environment variable or a prompt instead.
* ``keyvault:https://VAULT.vault.azure.net/certificates/NAME[/VERSION]`` - an Azure Key Vault certificate and
  its key.
* ``trustedsigning:https://REGION.codesigning.azure.net/ACCOUNT/PROFILE`` - an Azure Trusted Signing
  (Artifact Signing) certificate profile.

HTTPS is required for the two cloud forms except on the loopback interface (127.0.0.0/8, ``::1``, ``localhost``:
the emulator, e.g. ``keyvault:http://127.0.0.1:8080/certificates/NAME``), the rule of
:func:`ppmi_build.http.check_url`. Every malformed URI
gives one :class:`~ppmi_build.errors.KeyUriError` line naming the part that is wrong and the fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes, urlsplit

from ...errors import KeyUriError
from ...http.client import is_loopback

#: URI schemes that name a key source (anything else given to ``--key`` is a PEM private key file).
SCHEMES = ("pkcs11", "keyvault", "trustedsigning")

_PATH_ATTRS = {
    "token", "manufacturer", "serial", "model", "library-manufacturer", "library-description", "library-version",
    "object", "type", "id", "slot-manufacturer", "slot-description", "slot-id",
}
_QUERY_ATTRS = {"module-path", "module-name", "pin-value", "pin-source"}
_OBJECT_TYPES = {"private", "public", "cert", "secret-key", "data"}
_NAME = re.compile(r"^[0-9A-Za-z-]+$")


@dataclass(frozen=True)
class Pkcs11Uri:
    """A parsed RFC 7512 URI. Text attributes are decoded UTF-8, ``id`` is bytes, ``slot_id`` an int."""

    text: str
    token: str | None = None
    manufacturer: str | None = None
    serial: str | None = None
    model: str | None = None
    object: str | None = None
    id: bytes | None = None
    type: str | None = None
    slot_id: int | None = None
    slot_description: str | None = None
    slot_manufacturer: str | None = None
    module_path: str | None = None
    module_name: str | None = None

    scheme = "pkcs11"


@dataclass(frozen=True)
class KeyVaultUri:
    """``vault_url`` (``https://VAULT.vault.azure.net``), certificate ``name`` and optional ``version``."""

    text: str
    vault_url: str
    name: str
    version: str | None = None

    scheme = "keyvault"


@dataclass(frozen=True)
class TrustedSigningUri:
    """``endpoint`` (``https://REGION.codesigning.azure.net``), code-signing ``account`` and certificate ``profile``."""

    text: str
    endpoint: str
    account: str
    profile: str

    scheme = "trustedsigning"


KeyUri = Pkcs11Uri | KeyVaultUri | TrustedSigningUri


def is_key_uri(value: object) -> bool:
    """True when ``value`` starts with one of :data:`SCHEMES` followed by ``:`` (case-insensitive)."""
    text = str(value)
    scheme, sep, _ = text.partition(":")
    return bool(sep) and scheme.lower() in SCHEMES


def parse_key_uri(text: str) -> KeyUri:
    """Parse a key URI.

    Raises:
        KeyUriError (exit 2): unknown scheme, malformed or unknown attribute, a PIN in the URI, a cloud URL
        that is not HTTPS or lacks its path parts.
    """
    scheme, sep, rest = text.partition(":")
    if not sep or scheme.lower() not in SCHEMES:
        raise KeyUriError(f"--key {redact(text)!r}: unknown key URI scheme {scheme!r}; use pkcs11:..., "
                          "keyvault:https://VAULT.vault.azure.net/certificates/NAME or "
                          "trustedsigning:https://REGION.codesigning.azure.net/ACCOUNT/PROFILE")
    scheme = scheme.lower()
    if scheme == "pkcs11":
        return _parse_pkcs11(text, rest)
    if scheme == "keyvault":
        return _parse_keyvault(text, rest)
    return _parse_trusted_signing(text, rest)


# --- pkcs11 (RFC 7512) ----------------------------------------------------------------------------


def _pct(text: str, attr: str, value: str) -> bytes:
    if re.search(r"%(?![0-9A-Fa-f]{2})", value):
        raise KeyUriError(f"{text!r}: attribute {attr} has a '%' not followed by two hex digits; "
                          "percent-encode bytes as %XX (RFC 7512 §2.3)")
    return unquote_to_bytes(value)


def _text(text: str, attr: str, value: str) -> str:
    try:
        return _pct(text, attr, value).decode("utf-8")
    except UnicodeDecodeError:
        raise KeyUriError(f"{text!r}: attribute {attr} is not UTF-8 after percent-decoding; "
                          "encode the label as UTF-8 (RFC 7512 §2.3)") from None


def _attributes(text: str, part: str, sep: str, allowed: set[str], where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    if not part:
        return out
    for item in part.split(sep):
        if not item:
            continue
        name, eq, value = item.partition("=")
        name = name.strip().lower()
        if not eq or not name:
            raise KeyUriError(f"{text!r}: {where} attribute {item!r} is not NAME=VALUE; write e.g. "
                              "pkcs11:token=LABEL;object=KEY (RFC 7512 §2.3)")
        if name.startswith("x-"):
            continue
        if name not in allowed:
            raise KeyUriError(f"{text!r}: unknown {where} attribute {name!r}; use "
                              f"{', '.join(sorted(allowed - {'pin-value', 'pin-source'}))} (RFC 7512 §2.3)")
        if name in out:
            raise KeyUriError(f"{text!r}: attribute {name} appears twice; give it once (RFC 7512 §2.3)")
        out[name] = value
    return out


def redact(text: str) -> str:
    """``text`` with the value of any ``pin-value`` attribute replaced by ``***`` (for messages)."""
    return re.sub(r"(?i)(pin-value\s*=)[^&;]*", r"\1***", text)


def _parse_pkcs11(text: str, rest: str) -> Pkcs11Uri:
    text = redact(text)  # every message below may quote it
    path, _, query = rest.partition("?")
    attrs = _attributes(text, path, ";", _PATH_ATTRS, "path")
    q = _attributes(text, query, "&", _QUERY_ATTRS, "query")
    if "pin-value" in q or "pin-source" in q:
        which = "pin-value" if "pin-value" in q else "pin-source"
        raise KeyUriError(f"the pkcs11: URI carries {which}, which ppmi-build does not accept (a PIN in an argument "
                          "or a file path is visible to others); remove it and put the PIN in the environment "
                          "variable named by --pin-env (default PPMI_PKCS11_PIN) or type it at the prompt")
    shown = text  # no PIN can be in it (refused above)
    values: dict[str, object] = {}
    for name, raw in attrs.items():
        if name == "id":
            values["id"] = _pct(shown, name, raw)
        elif name == "slot-id":
            if not raw.isdigit():
                raise KeyUriError(f"{shown!r}: slot-id={raw!r} is not a decimal number; write e.g. slot-id=0 "
                                  "(RFC 7512 §2.3)")
            values["slot_id"] = int(raw)
        elif name == "type":
            value = _text(shown, name, raw)
            if value not in _OBJECT_TYPES:
                raise KeyUriError(f"{shown!r}: type={value!r} is not an object type; use type=private "
                                  "(RFC 7512 §2.3)")
            values["type"] = value
        elif name in ("token", "manufacturer", "serial", "model", "object", "slot-description",
                      "slot-manufacturer"):
            values[name.replace("-", "_")] = _text(shown, name, raw)
    for name in ("module-path", "module-name"):
        if name in q:
            values[name.replace("-", "_")] = _text(shown, name, q[name])
    if values.get("type") not in (None, "private"):
        raise KeyUriError(f"{shown!r}: type={values['type']} does not name a private key; use type=private or "
                          "leave type out (the certificate is found from the key's label/id)")
    if "object" not in values and "id" not in values:
        raise KeyUriError(f"{shown!r}: the URI names no key; add object=LABEL or id=%XX (the key's CKA_LABEL "
                          "or CKA_ID, see pkcs11-tool --list-objects)")
    return Pkcs11Uri(text=shown, **values)  # type: ignore[arg-type]


# --- cloud ----------------------------------------------------------------------------------------


def _https(text: str, url: str, example: str) -> tuple[str, list[str]]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    loopback = is_loopback(host)  # the emulator: keyvault:http://127.0.0.1:PORT/certificates/NAME
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise KeyUriError(f"{text!r}: the service URL must start with https:// (plain http only for 127.0.0.1); "
                          f"write {example}")
    if not host:
        raise KeyUriError(f"{text!r}: the service URL has no host name; write {example}")
    if parts.query or parts.fragment:
        raise KeyUriError(f"{text!r}: the URL carries a query or fragment; remove it and write {example}")
    base = f"{parts.scheme}://{parts.netloc}"
    return base, [p for p in parts.path.split("/") if p]


def _parse_keyvault(text: str, rest: str) -> KeyVaultUri:
    example = "keyvault:https://VAULT.vault.azure.net/certificates/NAME[/VERSION]"
    base, segments = _https(text, rest, example)
    if not segments or segments[0] != "certificates" or len(segments) not in (2, 3):
        raise KeyUriError(f"{text!r}: the path must be /certificates/NAME or /certificates/NAME/VERSION; "
                          f"write {example}")
    for seg, what in zip(segments[1:], ("certificate name", "certificate version"), strict=False):
        if not _NAME.match(seg):
            raise KeyUriError(f"{text!r}: {what} {seg!r} may hold only letters, digits and '-'; write {example}")
    return KeyVaultUri(text=text, vault_url=base, name=segments[1],
                       version=segments[2] if len(segments) == 3 else None)


def _parse_trusted_signing(text: str, rest: str) -> TrustedSigningUri:
    example = "trustedsigning:https://REGION.codesigning.azure.net/ACCOUNT/PROFILE"
    base, segments = _https(text, rest, example)
    if len(segments) != 2:
        raise KeyUriError(f"{text!r}: the path must be /ACCOUNT/PROFILE (the code-signing account and the "
                          f"certificate profile); write {example}")
    for seg, what in zip(segments, ("account", "certificate profile"), strict=True):
        if not _NAME.match(seg):
            raise KeyUriError(f"{text!r}: {what} {seg!r} may hold only letters, digits and '-'; write {example}")
    return TrustedSigningUri(text=text, endpoint=base, account=segments[0], profile=segments[1])
