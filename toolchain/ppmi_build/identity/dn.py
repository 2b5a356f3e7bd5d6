""".NET rendering of X.500 distinguished names, byte for byte, and the .NET/Windows DN string parser.

Why this exists: the FIC subject of managed identity version 2 is the SHA-256 of the *exact* string
``X509Certificate2.Issuer`` / ``.Subject`` return in the Dataverse sandbox (.NET Framework 4.6.2 on
Windows); one byte off and Entra answers ``AADSTS700213`` (domain-spec §1.2, [MS-V2] "Compute the
issuer and subject hashes"). Python ``cryptography``'s ``rfc4514_string()`` is a different format.

What .NET returns (sources, all dotnet/runtime ``src/libraries/System.Security.Cryptography``):

* ``X509Certificate2.Subject``/``.Issuer`` on Windows = ``CertGetNameString(CERT_NAME_RDN_TYPE,
  CERT_X500_NAME_STR | CERT_NAME_STR_REVERSE_FLAG)`` (``CertificatePal.Windows.cs``,
  ``GetIssuerOrSubject``), the same string as ``X500DistinguishedName.Name`` =
  ``Decode(X500DistinguishedNameFlags.Reversed)``; the managed decoder
  (``X500NameEncoder.cs`` + ``X500NameEncoder.ManagedDecode.cs``) is written to match Windows and
  its tests (``tests/X509Certificates/X500DistinguishedNameTests.cs``) are our vectors.
* RDNs in **reverse** DER order, separated by ``", "``; the attributes of a multi-valued RDN in DER
  order, separated by ``" + "``.
* Attribute type -> X.500 key name from the Windows table (``OidLookup.cs``: names "extracted …
  running them through new Oid(string) on Windows 10"), e.g. ``S`` (not ``ST``), ``E`` for
  emailAddress, ``PostalCode``, ``SERIALNUMBER``; an OID without a key name prints as ``OID.1.2.3``
  (``AppendOid``; CertNameToStr: "the OID is used with an "OID." prefix").
* A string value is wrapped in ``"…"`` when it is empty, starts or ends with one of space, ``\\t``,
  ``\\n``, ``\\v``, ``\\f``, ``\\r``, or contains any of ``, + = " \\n < > # ;`` (``\\r`` alone does not
  trigger it); an embedded ``"`` is doubled (``s_needsQuotingChars``, ``NeedsQuoting``,
  ``IsQuotableWhitespace``).
* A value that is not a character string prints as ``#`` + upper-case hex: the whole TLV, except
  an OCTET STRING whose contents are printed (CertNameToStr: "RDN values of type
  CERT_RDN_ENCODED_BLOB or CERT_RDN_OCTET_STRING are formatted in hexadecimal"; tests
  ``Format_ComponentWithNonStringContent``). Hex values are never quoted.
* Character strings: UTF8String (UTF-8), BMPString (UTF-16BE), UniversalString (UTF-32BE),
  T61String (UTF-8 when valid, else ISO 8859-1: test ``T61Strings``); PrintableString, IA5String,
  NumericString, VisibleString and the other 8-bit types as ISO 8859-1 (Windows reads them as
  8-bit strings; not checked against Windows for bytes >= 0x80). Trailing NUL characters are
  dropped (``X500DictionaryStringHelper.ReadAnyAsnString``: ``TrimEnd('\\0')``).
* An encoding .NET cannot read renders as the empty string (``X500DistinguishedNameDecode`` catches
  the CryptographicException, comment "Windows compat"; test ``PrintInvalidEncoding``).

Always render a certificate's names from its own DER (:func:`certificate_subject`,
:func:`certificate_issuer`): ``cryptography`` re-sorts multi-valued RDNs when it re-encodes a
:class:`~cryptography.x509.Name`, and .NET keeps the order on the wire (test
``OrganizationUnitMultiValueWithIncorrectlySortedDerSet``).
"""

from __future__ import annotations

import functools
import unicodedata
import warnings
from dataclasses import dataclass
from typing import NamedTuple

from cryptography import x509
from cryptography.x509.name import _ASN1Type

from ..errors import BadInput

# --- the Windows/.NET X.500 key names ---------------------------------------------------------

#: OID -> key name printed by .NET/Windows (``OidLookup.cs`` entries that are attribute types).
OID_TO_KEY: dict[str, str] = {
    "2.5.4.3": "CN",
    "2.5.4.4": "SN",
    "2.5.4.5": "SERIALNUMBER",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "S",
    "2.5.4.9": "STREET",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.12": "T",
    "2.5.4.13": "Description",
    "2.5.4.17": "PostalCode",
    "2.5.4.18": "POBox",
    "2.5.4.20": "Phone",
    "2.5.4.24": "X21Address",
    "2.5.4.42": "G",
    "2.5.4.43": "I",
    "2.5.4.46": "dnQualifier",
    "1.2.840.113549.1.9.1": "E",
    "0.9.2342.19200300.100.1.25": "DC",
    "2.23.133.2.1": "TPMManufacturer",
    "2.23.133.2.2": "TPMModel",
    "2.23.133.2.3": "TPMVersion",
}

#: Key names accepted when parsing (case-insensitive, like ``s_friendlyNameToOid``), plus the
#: aliases of the Windows CertStrToName table (``ST``, ``Email``, ``Title``, ``GivenName``, ``Initials``).
KEY_TO_OID: dict[str, str] = {k.upper(): v for v, k in OID_TO_KEY.items()} | {
    "ST": "2.5.4.8",
    "EMAIL": "1.2.840.113549.1.9.1",
    "TITLE": "2.5.4.12",
    "GIVENNAME": "2.5.4.42",
    "INITIALS": "2.5.4.43",
}

OID_COMMON_NAME = "2.5.4.3"
OID_EMAIL = "1.2.840.113549.1.9.1"

# s_needsQuotingChars: \r is NOT in this list, because it isn't in Windows.
_NEEDS_QUOTING = frozenset(',+="\n<>#;')
_PRINTABLE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?")


class _Invalid(Exception):
    """The DER is not something .NET's reader accepts."""


# --- a small strict DER reader ----------------------------------------------------------------


class _Tlv(NamedTuple):
    tag: int  # first identifier octet (class | constructed | number for low tag numbers)
    number: int  # tag number
    start: int  # offset of the identifier octet
    content: int  # offset of the contents
    end: int  # offset just past the contents

    def contents(self, data: bytes) -> bytes:
        return data[self.content:self.end]

    def whole(self, data: bytes) -> bytes:
        return data[self.start:self.end]


def _read_tlv(data: bytes, pos: int, limit: int) -> _Tlv:
    """One DER TLV at ``pos`` (definite, minimal length; X.690 §8.1, §10.1)."""
    if pos >= limit:
        raise _Invalid("truncated")
    start = pos
    first = data[pos]
    pos += 1
    number = first & 0x1F
    if number == 0x1F:  # high tag number form
        number = 0
        while True:
            if pos >= limit:
                raise _Invalid("truncated tag")
            b = data[pos]
            pos += 1
            number = (number << 7) | (b & 0x7F)
            if not b & 0x80:
                break
    if pos >= limit:
        raise _Invalid("truncated length")
    lb = data[pos]
    pos += 1
    if lb < 0x80:
        length = lb
    elif lb == 0x80:
        raise _Invalid("indefinite length is not DER")
    else:
        n = lb & 0x7F
        if n > 4 or pos + n > limit or data[pos] == 0:
            raise _Invalid("bad length")
        length = int.from_bytes(data[pos:pos + n], "big")
        if length < 0x80:
            raise _Invalid("length not minimal")
        pos += n
    end = pos + length
    if end > limit:
        raise _Invalid("contents run past the end")
    return _Tlv(first, number, start, pos, end)


def _children(data: bytes, tlv: _Tlv) -> list[_Tlv]:
    out = []
    pos = tlv.content
    while pos < tlv.end:
        child = _read_tlv(data, pos, tlv.end)
        out.append(child)
        pos = child.end
    return out


@functools.lru_cache(maxsize=1024)
def _decode_oid(content: bytes) -> str:
    """OBJECT IDENTIFIER contents -> dotted string (X.690 §8.19)."""
    if not content or content[-1] & 0x80:
        raise _Invalid("bad OID")
    arcs: list[int] = []
    value = 0
    fresh = True
    for b in content:
        if fresh and b == 0x80:
            raise _Invalid("OID arc not minimal")
        value = (value << 7) | (b & 0x7F)
        fresh = not b & 0x80
        if fresh:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


# --- decoding attribute values ----------------------------------------------------------------

_UTF8, _NUMERIC, _PRINTABLE_T, _T61, _VIDEOTEX, _IA5, _GRAPHIC, _VISIBLE, _GENERAL, _UNIVERSAL, _BMP = (
    0x0C, 0x12, 0x13, 0x14, 0x15, 0x16, 0x19, 0x1A, 0x1B, 0x1C, 0x1E,
)
_EIGHT_BIT = {_NUMERIC, _PRINTABLE_T, _IA5, _VISIBLE, _VIDEOTEX, _GRAPHIC, _GENERAL}


def _value_text(data: bytes, tlv: _Tlv) -> tuple[str, bool]:
    """(text, is_string) for an AttributeValue TLV; non-strings give ``#HEX`` and False."""
    raw = tlv.contents(data)
    tag = tlv.tag
    if tag == _UTF8:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Invalid("UTF8String is not UTF-8") from None
    elif tag == _BMP:
        if len(raw) % 2:
            raise _Invalid("odd-length BMPString")
        text = raw.decode("utf-16-be", errors="surrogatepass")
    elif tag == _UNIVERSAL:
        if len(raw) % 4:
            raise _Invalid("bad UniversalString length")
        try:
            text = raw.decode("utf-32-be")
        except UnicodeDecodeError:
            raise _Invalid("bad UniversalString") from None
    elif tag == _T61:
        # Windows (10.0.15063+) and .NET: UTF-8 if it is valid UTF-8, else ISO 8859-1 (test T61Strings).
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
    elif tag in _EIGHT_BIT:
        text = raw.decode("latin-1")
    elif tag == 0x04:  # OCTET STRING: CERT_RDN_OCTET_STRING, the contents in hex
        return "#" + raw.hex().upper(), False
    else:  # CERT_RDN_ENCODED_BLOB: the whole encoded value in hex
        return "#" + tlv.whole(data).hex().upper(), False
    return text.rstrip("\0"), True


def _is_quotable_whitespace(c: str) -> bool:
    # IsQuotableWhitespace: space, \t \n \v \f \r (0x09..0x0D); other Unicode white space is not quoted.
    return c == " " or "\x09" <= c <= "\x0d"


def needs_quoting(value: str) -> bool:
    """.NET ``X500NameEncoder.NeedsQuoting``: empty, leading/trailing quotable white space, or a special."""
    return (
        not value
        or _is_quotable_whitespace(value[0])
        or _is_quotable_whitespace(value[-1])
        or not _NEEDS_QUOTING.isdisjoint(value)
    )


@dataclass(frozen=True)
class Attribute:
    """One AttributeTypeAndValue as .NET sees it."""

    oid: str
    key: str  # "CN", "S", "OID.1.2.3"
    value: str  # decoded text, or "#HEX" for non-strings
    is_string: bool
    tag: int  # first identifier octet of the value (0x13 PrintableString, 0x0C UTF8String, ...)

    def render(self, quote: bool = True) -> str:
        v = self.value
        if self.is_string and quote and needs_quoting(v):
            v = '"' + v.replace('"', '""') + '"'
        return f"{self.key}={v}"


def key_name(oid: str) -> str:
    """The .NET/Windows X.500 key for ``oid`` (``CN``, ``S``, ``E``), or ``OID.<dotted>``."""
    return OID_TO_KEY.get(oid) or "OID." + oid


def _parse_name_der(data: bytes) -> list[list[Attribute]]:
    top = _read_tlv(data, 0, len(data))
    if top.end != len(data) or top.tag != 0x30:
        raise _Invalid("not a single SEQUENCE")
    rdns: list[list[Attribute]] = []
    for rdn in _children(data, top):
        if rdn.tag != 0x31:
            raise _Invalid("RDN is not a SET")
        attrs = []
        # skipSortOrderValidation: true -- multi-valued RDNs keep their wire order (Windows behaviour).
        for atv in _children(data, rdn):
            if atv.tag != 0x30:
                raise _Invalid("AttributeTypeAndValue is not a SEQUENCE")
            parts = _children(data, atv)
            if len(parts) != 2 or parts[0].tag != 0x06:
                raise _Invalid("AttributeTypeAndValue needs an OID and one value")
            oid = _decode_oid(parts[0].contents(data))
            try:
                text, is_string = _value_text(data, parts[1])
            except _Invalid as e:
                raise _Invalid(f"attribute {key_name(oid)} ({oid}): {e}") from None
            attrs.append(Attribute(oid, key_name(oid), text, is_string, parts[1].tag))
        if not attrs:
            raise _Invalid("empty RDN")
        rdns.append(attrs)
    return rdns


def _der_of(name: x509.Name | bytes | bytearray | memoryview) -> bytes:
    if isinstance(name, x509.Name):
        return name.public_bytes()
    return bytes(name)


def name_attributes(name: x509.Name | bytes) -> list[list[Attribute]]:
    """The RDNs of a Name (DER order), each a list of :class:`Attribute` in wire order.

    Raises:
        BadInput: the DER is not a Name .NET can read.
    """
    try:
        return _parse_name_der(_der_of(name))
    except _Invalid as e:
        raise BadInput(f"the distinguished name cannot be decoded ({e}); the certificate is malformed") from None


def name_problem(name: x509.Name | bytes) -> str | None:
    """Why .NET could not render ``name`` (naming the attribute when one is at fault), or None.

    Example: ``"attribute CN (2.5.4.3): UTF8String is not UTF-8"``.
    """
    try:
        _parse_name_der(_der_of(name))
    except _Invalid as e:
        return str(e)
    return None


#: Universal tag -> ASN.1 type name, for notes about non-string attribute values.
_TAG_NAMES = {0x01: "BOOLEAN", 0x02: "INTEGER", 0x03: "BIT STRING", 0x04: "OCTET STRING", 0x05: "NULL",
              0x06: "OBJECT IDENTIFIER", 0x30: "SEQUENCE", 0x31: "SET"}


def non_string_attributes(name: x509.Name | bytes) -> list[str]:
    """Attributes whose value is not a character string, e.g. ``["CN holds a BIT STRING"]``.

    .NET renders them as ``#`` + hex (test ``Format_ComponentWithNonStringContent``); callers show
    these as notes. An undecodable Name gives ``[]`` (see :func:`name_problem`).
    """
    try:
        rdns = _parse_name_der(_der_of(name))
    except _Invalid:
        return []

    def kind(tag: int) -> str:
        type_name = _TAG_NAMES.get(tag)
        if type_name is None:
            return f"a value with tag 0x{tag:02X}"
        return ("an " if type_name[0] in "AEIOU" else "a ") + type_name

    return [f"{a.key} holds {kind(a.tag)}" for rdn in rdns for a in rdn if not a.is_string]


def dotnet_name(name: x509.Name | bytes, *, reverse: bool = True, quote: bool = True, strict: bool = False) -> str:
    """Render a Name exactly like .NET ``X500DistinguishedName.Decode(flags)``.

    Args:
        name: DER bytes of the Name (preferred: see :func:`certificate_subject`) or an
            ``x509.Name`` (re-encoded by cryptography, so multi-valued RDNs come out DER-sorted).
        reverse: ``True`` = ``X500DistinguishedNameFlags.Reversed`` (what ``.Name``,
            ``X509Certificate2.Subject`` and ``.Issuer`` use); ``False`` = DER order (``Flags.None``).
        quote: ``False`` = ``DoNotUseQuotes``.
        strict: raise instead of returning ``""`` when .NET could not read the encoding.
    Returns:
        The string (UTF-16 text as a Python ``str``); ``""`` for an empty Name or unreadable DER.
    Raises:
        BadInput: only with ``strict=True`` and a Name .NET cannot decode.
    """
    try:
        rdns = _parse_name_der(_der_of(name))
    except _Invalid as e:
        if strict:
            raise BadInput(
                f"the distinguished name cannot be decoded as .NET would ({e}); the certificate is malformed"
            ) from None
        return ""
    if reverse:
        rdns = rdns[::-1]
    return ", ".join(" + ".join(a.render(quote) for a in rdn) for rdn in rdns)


# --- certificates: the names as they are on the wire --------------------------------------------


def certificate_name_ders(cert: x509.Certificate) -> tuple[bytes, bytes]:
    """(issuer DER, subject DER) exactly as encoded in the certificate's TBSCertificate (RFC 5280 §4.1).

    Raises:
        BadInput: the TBSCertificate does not have the RFC 5280 layout.
    """
    data = cert.tbs_certificate_bytes
    try:
        tbs = _read_tlv(data, 0, len(data))
        fields = _children(data, tbs)
        i = 1 if fields and fields[0].tag == 0xA0 else 0  # [0] EXPLICIT Version DEFAULT v1
        # serialNumber, signature, issuer, validity, subject
        issuer, subject = fields[i + 2], fields[i + 4]
        if issuer.tag != 0x30 or subject.tag != 0x30:
            raise _Invalid("names are not SEQUENCEs")
    except (_Invalid, IndexError) as e:
        raise BadInput(f"the certificate's TBSCertificate cannot be read ({e})") from None
    return issuer.whole(data), subject.whole(data)


def certificate_extension_ders(cert: x509.Certificate) -> list[tuple[str, bytes]]:
    """``(OID, whole Extension DER)`` of each extension in the TBSCertificate, in order (RFC 5280 §4.1).

    Reads only the outer layers (``[3] EXPLICIT SEQUENCE OF Extension``, each a SEQUENCE starting
    with an OID), so it works on a certificate whose extension *values* ``cryptography`` cannot parse.

    Raises:
        BadInput: the extensions field itself is not DER.
    """
    data = cert.tbs_certificate_bytes
    out: list[tuple[str, bytes]] = []
    try:
        tbs = _read_tlv(data, 0, len(data))
        for field in _children(data, tbs):
            if field.tag != 0xA3:  # [3] EXPLICIT Extensions
                continue
            (seq,) = _children(data, field)
            for ext in _children(data, seq):
                parts = _children(data, ext)
                if ext.tag != 0x30 or not parts or parts[0].tag != 0x06:
                    raise _Invalid("an extension is not a SEQUENCE starting with an OID")
                out.append((_decode_oid(parts[0].contents(data)), ext.whole(data)))
    except (_Invalid, ValueError) as e:
        raise BadInput(f"the certificate's extensions cannot be read ({e})") from None
    return out


def certificate_subject(cert: x509.Certificate) -> str:
    """``X509Certificate2.Subject`` of ``cert`` (see module docstring)."""
    return dotnet_name(certificate_name_ders(cert)[1])


def certificate_issuer(cert: x509.Certificate) -> str:
    """``X509Certificate2.Issuer`` of ``cert``."""
    return dotnet_name(certificate_name_ders(cert)[0])


def common_names(name: x509.Name | bytes) -> list[str]:
    """The CN values of a Name in DER order (non-string CN values are left out)."""
    return [a.value for rdn in name_attributes(name) for a in rdn if a.oid == OID_COMMON_NAME and a.is_string]


# --- parsing .NET / Windows DN strings ----------------------------------------------------------


def _is_ws(c: str) -> bool:
    return c.isspace()  # char.IsWhiteSpace


def _is_control(c: str) -> bool:
    return unicodedata.category(c) == "Cc"  # char.IsControl


def _valid_dotted_oid(text: str) -> bool:
    parts = text.split(".")
    if len(parts) < 2 or not all(p.isascii() and p.isdigit() for p in parts):
        return False
    first, second = int(parts[0]), int(parts[1])
    return first <= 2 and (first == 2 or second < 40)


def _resolve_key(tag: str, dn: str) -> str:
    """``ParseOid``: ``OID.`` prefix + dotted OID, a dotted OID, or a key name (case-insensitive)."""
    if len(tag) > 4 and tag[:4].upper() == "OID.":
        oid = tag[4:]
        if _valid_dotted_oid(oid):
            return oid
    elif tag.upper() in KEY_TO_OID:
        return KEY_TO_OID[tag.upper()]
    elif _valid_dotted_oid(tag):
        return tag
    raise _dn_error(dn, f"unknown attribute {tag!r} (use CN, O, OU, L, S, C, E, STREET, DC, SERIALNUMBER, "
                        "… or OID.1.2.3)")


def _dn_error(dn: str, reason: str) -> BadInput:
    shown = dn if len(dn) <= 120 else dn[:117] + "..."
    return BadInput(
        f"distinguished name {shown!r} is not valid: {reason}; write it like 'CN=Contoso Dev, E=dev@contoso.com' "
        "and put values that contain , + = \" ; < > # in double quotes"
    )


_SEPARATORS = ",;"  # DefaultSeparators: comma or semicolon (not CR/LF)


def parse_dotnet_dn_components(text: str) -> list[list[tuple[str, str]]]:
    """Split a .NET/Windows DN string into RDNs of (OID, value), in the order written.

    Rules (dotnet/runtime ``X500NameEncoder.ParseDistinguishedName``; Windows ``CertStrToName``):
    RDNs are separated by ``,`` or ``;``; white space around keys, ``=`` and values is ignored; a
    value in double quotes may contain anything and ``""`` stands for one ``"``; keys are .NET/
    Windows names (case-insensitive), ``OID.1.2.3`` or ``1.2.3``. Windows extension: an unquoted
    ``+`` separates the attributes of a multi-valued RDN (CertStrToName). A leading ``#`` (Windows
    hex value) is refused: quote the value instead.

    Raises:
        BadInput: one line naming the string and the fix.
    """
    rdns: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    n = len(text)
    pos = 0
    expecting_attribute = False  # after '+', another attribute must follow
    while True:
        while pos < n and _is_ws(text[pos]):
            pos += 1
        if pos >= n:
            if expecting_attribute:
                raise _dn_error(text, "'+' must be followed by another attribute")
            if current:
                rdns.append(current)
            break
        # tag
        start = pos
        while pos < n and text[pos] != "=" and not _is_ws(text[pos]):
            if _is_control(text[pos]):
                raise _dn_error(text, f"control character U+{ord(text[pos]):04X} in an attribute name")
            pos += 1
        tag = text[start:pos]
        while pos < n and _is_ws(text[pos]):
            pos += 1
        if pos >= n or text[pos] != "=":
            if pos < n and _is_control(text[pos]):
                raise _dn_error(text, f"control character U+{ord(text[pos]):04X} in an attribute name")
            raise _dn_error(text, f"expected '=' after {tag!r}")
        pos += 1
        oid = _resolve_key(tag, text)
        # value
        while pos < n and _is_ws(text[pos]):
            pos += 1
        if pos < n and text[pos] == '"':
            pos += 1
            chars: list[str] = []
            while True:
                if pos >= n:
                    raise _dn_error(text, f"the quoted value of {tag} has no closing quote")
                c = text[pos]
                pos += 1
                if c == '"':
                    if pos < n and text[pos] == '"':
                        chars.append('"')
                        pos += 1
                        continue
                    break
                chars.append(c)
            value = "".join(chars)
            while pos < n and _is_ws(text[pos]):
                pos += 1
            if pos < n and text[pos] not in _SEPARATORS + "+":
                raise _dn_error(text, f"unexpected {text[pos]!r} after the closing quote of {tag}")
        else:
            start = pos
            while pos < n and text[pos] not in _SEPARATORS + "+":
                pos += 1
            value = text[start:pos]
            end = len(value)
            while end > 0 and _is_ws(value[end - 1]):
                end -= 1
            value = value[:end]
            if value.startswith("#"):
                raise _dn_error(text, f"{tag} starts with '#' (a hex value to Windows); quote it: {tag}=\"{value}\"")
        current.append((oid, value))
        expecting_attribute = False
        if pos >= n:
            rdns.append(current)
            break
        sep = text[pos]
        pos += 1
        if sep == "+":
            expecting_attribute = True
            continue
        rdns.append(current)
        current = []
        # A second separator right away is an empty tag: invalid (as in .NET).
        while pos < n and _is_ws(text[pos]):
            pos += 1
        if pos < n and text[pos] in _SEPARATORS:
            raise _dn_error(text, "two separators in a row")
    return rdns


def _string_type(oid: str, value: str, dn: str) -> _ASN1Type:
    """``X500NameEncoder.ParseRdn``: E -> IA5String; PrintableString when every character fits; else UTF8String."""
    if oid == OID_EMAIL:
        if not value.isascii():
            raise _dn_error(dn, f"E={value!r} is not 7-bit ASCII (IA5String)")
        return _ASN1Type.IA5String
    if all(c in _PRINTABLE for c in value):
        return _ASN1Type.PrintableString
    return _ASN1Type.UTF8String


def parse_dotnet_dn(text: str, *, reverse: bool = True) -> x509.Name:
    """Parse a DN written the .NET/PowerShell way into an ``x509.Name``.

    With ``reverse=True`` (the default of ``new X500DistinguishedName(string)`` and of
    ``New-SelfSignedCertificate -Subject``) the DER order is the reverse of the written order, so
    ``X509Certificate2.Subject`` renders the name as written: ``"E=x@y, CN=z"`` ->
    ``.Subject == "E=x@y, CN=z"`` (domain-spec §1.2, [WODTKE-2026]; dotnet/runtime
    ``X500DistinguishedNameEncodingTests`` "Parse reversed"). Value types follow .NET's encoder
    (``ParseRdn``): ``E`` as IA5String, otherwise PrintableString when possible, else UTF8String.

    Raises:
        BadInput: syntax error, unknown attribute name, non-ASCII ``E``.
    """
    rdns = parse_dotnet_dn_components(text)
    if reverse:
        rdns = rdns[::-1]
    built = []
    with warnings.catch_warnings():
        # cryptography warns about RFC 5280 upper bounds (e.g. CN > 64); .NET does not check them.
        warnings.simplefilter("ignore")
        for rdn in rdns:
            attrs = [
                x509.NameAttribute(x509.ObjectIdentifier(oid), value, _string_type(oid, value, text), _validate=False)
                for oid, value in rdn
            ]
            try:
                built.append(x509.RelativeDistinguishedName(attrs))
            except ValueError as e:
                raise _dn_error(text, str(e)) from None
    return x509.Name(built)


def encode_dotnet_dn(text: str, *, reverse: bool = True) -> bytes:
    """DER of :func:`parse_dotnet_dn` (the bytes ``X500DistinguishedName.RawData`` has on Unix)."""
    return parse_dotnet_dn(text, reverse=reverse).public_bytes()
