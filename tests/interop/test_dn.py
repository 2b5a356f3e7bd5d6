""".NET distinguished-name rendering and parsing against dotnet/runtime's own test vectors.

Vectors are copied from dotnet/runtime ``src/libraries/System.Security.Cryptography/tests/X509Certificates/``:
``X500DistinguishedNameTests.cs`` (DER -> string; commit 0b7b7b5f) and
``X500DistinguishedNameEncodingTests.cs`` (string -> DER, "preferred" = Unix encoding; commit 8b9361fc).
The test name in .NET is given next to each vector. .NET flag mapping: ``Decode(None)`` ->
``dotnet_name(der, reverse=False)``, ``.Name``/``Decode(Reversed)`` -> ``dotnet_name(der)``,
``DoNotUseQuotes`` -> ``quote=False``; ``new X500DistinguishedName(s)`` (default flag Reversed) ->
``parse_dotnet_dn(s)``, ``new X500DistinguishedName(s, None)`` -> ``parse_dotnet_dn(s, reverse=False)``.
"""

from __future__ import annotations

import datetime as dt
import subprocess

import pytest
from asn1crypto.core import ObjectIdentifier
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ppmi_build.errors import BadInput
from ppmi_build.identity.dn import (
    certificate_issuer,
    certificate_name_ders,
    certificate_subject,
    common_names,
    dotnet_name,
    encode_dotnet_dn,
    parse_dotnet_dn,
)
from tests.conftest import require_tool, run_tool


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# --- X500DistinguishedNameTests.cs ----------------------------------------------------------------


def test_print_invalid_encoding():
    # PrintInvalidEncoding: one byte removed from the payload -> "" (Windows compat)
    assert dotnet_name(h("3017311530130603550403130C436F6D6D6F6E204E616D65"), reverse=False) == ""
    with pytest.raises(BadInput):
        dotnet_name(h("3017311530130603550403130C436F6D6D6F6E204E616D65"), strict=True)


def test_print_multi_component_rdn():
    # PrintMultiComponentRdn: same with and without Reversed (one RDN)
    der = h("30223120300C060355040313054A616D65733010060355040A13094D6963726F736F6674")
    assert dotnet_name(der, reverse=False) == "CN=James + O=Microsoft"
    assert dotnet_name(der) == "CN=James + O=Microsoft"


def test_print_unknown_oid_rdn():
    # PrintUnknownOidRdn
    assert dotnet_name(h("30183116301406052901020203130B496E76616C6964204F6964"), reverse=False) == \
        "OID.1.1.1.2.2.3=Invalid Oid"


# WhitespaceBeforeCases (QuoteWhitespaceBefore / NoQuoteWhitespaceBefore)
WHITESPACE_BEFORE = [
    ('CN=" Common Name"', "3017311530130603550403130C20436F6D6D6F6E204E616D65"),  # space
    ('CN="\tCommon Name"', "30233121301F06035504031E1800090043006F006D006D006F006E0020004E0061006D0065"),  # tab
    ('CN="\nCommon Name"', "30233121301F06035504031E18000A0043006F006D006D006F006E0020004E0061006D0065"),  # LF
    ('CN="\rCommon Name"', "30233121301F06035504031E18000D0043006F006D006D006F006E0020004E0061006D0065"),  # CR
    ("CN=\u2002Common Name", "30233121301F06035504031E1820020043006F006D006D006F006E0020004E0061006D0065"),  # em quad
    # The \v and \f cases are commented out in .NET (xUnit cannot print them); same rule, kept here:
    ('CN="\vCommon Name"', "30233121301F06035504031E18000B0043006F006D006D006F006E0020004E0061006D0065"),
    ('CN="\x0cCommon Name"', "30233121301F06035504031E18000C0043006F006D006D006F006E0020004E0061006D0065"),
]

# WhitespaceAfterCases (QuoteWhitespaceAfter / NoQuoteWhitespaceAfter)
WHITESPACE_AFTER = [
    ('CN="Common Name "', "3017311530130603550403130C436F6D6D6F6E204E616D6520"),
    ('CN="Common Name\t"', "30233121301F06035504031E180043006F006D006D006F006E0020004E0061006D00650009"),
    ('CN="Common Name\n"', "30233121301F06035504031E180043006F006D006D006F006E0020004E0061006D0065000A"),
    ('CN="Common Name\r"', "30233121301F06035504031E180043006F006D006D006F006E0020004E0061006D0065000D"),
    ("CN=Common Name\u2002", "30233121301F06035504031E180043006F006D006D006F006E0020004E0061006D00652002"),
]

# QuotedContentsCases (QuoteByContents / NoQuoteByContents)
QUOTED_CONTENTS = [
    ('CN=""', "300B3109300706035504031300"),  # empty value
    ('CN="Common,Name"', "3016311430120603550403130B436F6D6D6F6E2C4E616D65"),
    ('CN="Common+Name"', "3016311430120603550403130B436F6D6D6F6E2B4E616D65"),
    ('CN="Common=Name"', "3016311430120603550403130B436F6D6D6F6E3D4E616D65"),
    ('CN="Common\nName"', "3021311F301D06035504031E160043006F006D006D006F006E000A004E0061006D0065"),
    ("CN=Common\rName", "3021311F301D06035504031E160043006F006D006D006F006E000D004E0061006D0065"),  # CR not quoted
    ('CN="Common<Name"', "3021311F301D06035504031E160043006F006D006D006F006E003C004E0061006D0065"),
    ('CN="Common>Name"', "3021311F301D06035504031E160043006F006D006D006F006E003E004E0061006D0065"),
    ('CN="Common#Name"', "3021311F301D06035504031E160043006F006D006D006F006E0023004E0061006D0065"),
    ('CN="Common;Name"', "3021311F301D06035504031E160043006F006D006D006F006E003B004E0061006D0065"),
]


@pytest.mark.parametrize("expected,der", WHITESPACE_BEFORE + WHITESPACE_AFTER + QUOTED_CONTENTS)
def test_quoting(expected, der):
    assert dotnet_name(h(der), reverse=False) == expected
    assert dotnet_name(h(der), reverse=False, quote=False) == expected.replace('"', "")


# InternallyQuotedRDNs (QuotedWithQuotesAsAppropriate): (quoted, not quoted, DER)
@pytest.mark.parametrize("quoted,not_quoted,der", [
    ('CN="Common""Name"', 'CN=Common"Name',
     "3021311F301D06035504031E160043006F006D006D006F006E0022004E0061006D0065"),
    ('CN="""Common Name"', 'CN="Common Name',
     "30233121301F06035504031E1800220043006F006D006D006F006E0020004E0061006D0065"),
    ('CN="Common Name"""', 'CN=Common Name"',
     "30233121301F06035504031E180043006F006D006D006F006E0020004E0061006D00650022"),
])
def test_internally_quoted(quoted, not_quoted, der):
    assert dotnet_name(h(der), reverse=False) == quoted
    assert dotnet_name(h(der), reverse=False, quote=False) == not_quoted


# T61Cases (T61Strings: asserts dn.Name, i.e. Reversed)
@pytest.mark.parametrize("expected,der", [
    # https://github.com/dotnet/runtime/issues/25195
    ("CN=GrapeCity inc., OU=Tools Development, O=GrapeCity inc., L=Sendai Izumi-ku, S=Miyagi, C=JP",
     "308186310b3009060355040613024a50310f300d060355040813064d69796167"
     "69311830160603550407130f53656e64616920497a756d692d6b753117301506"
     "0355040a140e47726170654369747920696e632e311a3018060355040b141154"
     "6f6f6c7320446576656c6f706d656e74311730150603550403140e4772617065"
     "4369747920696e632e"),
    # Mono test case taken from old bug report
    ("SERIALNUMBER=CVR:13471967-UID:121212121212, E=vhm@use.test.dk, "
     "CN=Hedeby's M\u00f8belhandel - Salgsafdelingen, O=Hedeby's M\u00f8belhandel // CVR:13471967, C=DK",
     "3081B5310B300906035504061302444B312D302B060355040A14244865646562"
     "792773204DF862656C68616E64656C202F2F204356523A313334373139363731"
     "2F302D060355040314264865646562792773204DF862656C68616E64656C202D"
     "2053616C6773616664656C696E67656E311E301C06092A864886F70D01090116"
     "0F76686D407573652E746573742E646B312630240603550405131D4356523A31"
     "333437313936372D5549443A313231323132313231323132"),
    # Valid UTF-8 string is interpreted as UTF-8
    ("C=\u00a2", "300D310B300906035504061402C2A2"),
    # Invalid UTF-8 string with valid UTF-8 sequence is interpreted as ISO 8859-1
    ("L=\u00c2\u00a2\u00f8", "300E310C300A06035504071403C2A2F8"),
])
def test_t61_strings(expected, der):
    assert dotnet_name(h(der)) == expected


MICROSOFT_DOT_COM_SUBJECT = (
    "3082010F31133011060B2B0601040182373C02010313025553311B3019060B2B"
    "0601040182373C0201020C0A57617368696E67746F6E311D301B060355040F13"
    "1450726976617465204F7267616E697A6174696F6E3112301006035504051309"
    "363030343133343835310B3009060355040613025553310E300C06035504110C"
    "0539383035323113301106035504080C0A57617368696E67746F6E3110300E06"
    "035504070C075265646D6F6E643118301606035504090C0F31204D6963726F73"
    "6F667420576179311E301C060355040A0C154D6963726F736F667420436F7270"
    "6F726174696F6E310E300C060355040B0C054D53434F4D311A30180603550403"
    "0C117777772E6D6963726F736F66742E636F6D"
)


def test_print_complex_reversed_and_forwards():
    der = h(MICROSOFT_DOT_COM_SUBJECT)
    # PrintComplexReversed
    assert dotnet_name(der).startswith(
        "CN=www.microsoft.com, OU=MSCOM, O=Microsoft Corporation, STREET=1 Microsoft Way, "
        "L=Redmond, S=Washington, PostalCode=98052, C=US, SERIALNUMBER=600413485, ")
    # PrintComplexForwards
    assert dotnet_name(der, reverse=False).endswith(
        ", SERIALNUMBER=600413485, C=US, PostalCode=98052, S=Washington, L=Redmond, "
        "STREET=1 Microsoft Way, O=Microsoft Corporation, OU=MSCOM, CN=www.microsoft.com")
    # The test's comment: Windows 8.1 continues with these unknown OIDs (no X.500 key on Windows).
    assert dotnet_name(der).endswith(
        "OID.2.5.4.15=Private Organization, OID.1.3.6.1.4.1.311.60.2.1.2=Washington, OID.1.3.6.1.4.1.311.60.2.1.3=US")


def test_name_with_numeric_string():
    # NameWithNumericString
    der = h("30283117301506052901020203120C313233203635342037383930310D300B0603550403130454657374")
    assert dotnet_name(der, reverse=False) == "OID.1.1.1.2.2.3=123 654 7890, CN=Test"


def test_multi_value_incorrectly_sorted_set_keeps_wire_order():
    # OrganizationUnitMultiValueWithIncorrectlySortedDerSet
    assert dotnet_name(h("301C311A300B060355040B13047A7A7A7A300B060355040B130461616161"), reverse=False) == \
        "OU=zzzz + OU=aaaa"


def test_name_with_st_identifier_for_state():
    # NameWithSTIdentifierForState: new X500DistinguishedName("ST=VA, C=US").Decode(None)
    assert dotnet_name(encode_dotnet_dn("ST=VA, C=US"), reverse=False) == "C=US, S=VA"


def test_tpm_identifiers():
    # TpmIdentifiers
    der = encode_dotnet_dn("OID.2.23.133.2.3=id:0020065,OID.2.23.133.2.2=,OID.2.23.133.2.1=id:564D5700")
    assert dotnet_name(der, reverse=False) == 'TPMManufacturer=id:564D5700, TPMModel="", TPMVersion=id:0020065'


def test_enumerator_with_non_textual_data_comment():
    # EnumeratorWithNonTextualData: the DER and, in the test's comment, its rendering
    der = bytes([
        0x30, 0x81, 0x98, 0x31, 0x0B, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06, 0x13, 0x02, 0x55, 0x53,
        0x31, 0x13, 0x30, 0x11, 0x06, 0x03, 0x55, 0x04, 0x08, 0x13, 0x0A, 0x57, 0x61, 0x73, 0x68, 0x69,
        0x6E, 0x67, 0x74, 0x6F, 0x6E, 0x31, 0x10, 0x30, 0x0E, 0x06, 0x03, 0x55, 0x04, 0x07, 0x13, 0x07,
        0x52, 0x65, 0x64, 0x6D, 0x6F, 0x6E, 0x64, 0x31, 0x1E, 0x30, 0x1C, 0x06, 0x03, 0x55, 0x04, 0x0A,
        0x13, 0x15, 0x4D, 0x69, 0x63, 0x72, 0x6F, 0x73, 0x6F, 0x66, 0x74, 0x20, 0x43, 0x6F, 0x72, 0x70,
        0x6F, 0x72, 0x61, 0x74, 0x69, 0x6F, 0x6E, 0x31, 0x20, 0x30, 0x1E, 0x06, 0x03, 0x55, 0x04, 0x0B,
        0x13, 0x17, 0x2E, 0x4E, 0x45, 0x54, 0x20, 0x46, 0x72, 0x61, 0x6D, 0x65, 0x77, 0x6F, 0x72, 0x6B,
        0x20, 0x28, 0x43, 0x6F, 0x72, 0x65, 0x46, 0x58, 0x29, 0x31, 0x12, 0x30, 0x10, 0x06, 0x03, 0x55,
        0x04, 0x03, 0x13, 0x09, 0x6C, 0x6F, 0x63, 0x61, 0x6C, 0x68, 0x6F, 0x73, 0x74, 0x31, 0x0C, 0x30,
        0x0A, 0x06, 0x03, 0x55, 0x04, 0x6A, 0x06, 0x03, 0x2A, 0x03, 0x04,
    ])
    assert dotnet_name(der) == ("OID.2.5.4.106=#06032A0304, CN=localhost, OU=.NET Framework (CoreFX), "
                                "O=Microsoft Corporation, L=Redmond, S=Washington, C=US")


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    length = bytes([n]) if n < 0x80 else bytes([0x81, n])
    return bytes([tag]) + length + content


def _name(rdns: list[list[tuple[str, str]]]) -> bytes:
    """Build a Name from (OID, value-TLV-hex) pairs, the way the .NET test uses AsnWriter."""
    sets = b"".join(
        _tlv(0x31, b"".join(_tlv(0x30, ObjectIdentifier(oid).dump() + h(value)) for oid, value in rdn))
        for rdn in rdns
    )
    return _tlv(0x30, sets)


# Format_ComponentWithNonStringContent: (oids, attribute values, expected Decode(None)/Format(false))
@pytest.mark.parametrize("oids,values,expected", [
    (["2.5.4.3"], ["3000"], "CN=#3000"),
    (["2.5.4.5"], ["0603550406"], "SERIALNUMBER=#0603550406"),
    (["0.0"], ["31020500"], "OID.0.0=#31020500"),
    (["2.5.4.3"], ["04023000"], "CN=#3000"),  # OCTET STRING is implicitly stripped
    (["2.5.4.3"], ["040404023000"], "CN=#04023000"),  # Only one OCTET STRING is stripped
    (["2.5.4.3"], ["0303003000"], "CN=#0303003000"),  # BIT STRING is not implicitly stripped
    (["2.5.4.8"], ["0500"], "S=#0500"),
    (["2.5.4.8"], ["0101FF"], "S=#0101FF"),
    (["2.5.4.3", "2.5.4.8"], ["0101FF", "3000"], "CN=#0101FF, S=#3000"),
    (["2.5.4.3", "2.5.4.8", "0.0"], ["0C02504A", "3000", "0C024141"], "CN=PJ, S=#3000, OID.0.0=AA"),
    (["2.5.4.3", "2.5.4.8"], ["0C03233030", "3000"], 'CN="#00", S=#3000'),
])
def test_component_with_non_string_content(oids, values, expected):
    der = _name([[(o, v)] for o, v in zip(oids, values, strict=True)])
    assert dotnet_name(der, reverse=False) == expected


def test_multi_value_component_with_non_string_content():
    # Format_MultiValueComponentWithNonStringContent
    der = _name([
        [("2.5.4.3", "3000"), ("2.5.4.8", "3100")],
        [("2.5.4.5", "0C0430313233"), ("2.5.4.10", "31055050505050"), ("2.5.4.9", "0C075441434F434154")],
    ])
    assert dotnet_name(der, reverse=False) == \
        "CN=#3000 + S=#3100, SERIALNUMBER=0123 + O=#31055050505050 + STREET=TACOCAT"


def test_edge_case_use_comma_and_new_lines():
    # EdgeCaseUseCommaAndNewLines: parsed with Flags.None, decoded without Reversed
    rname = 'C=US, O="RSA Data Security, Inc.", OU=Secure Server Certification Authority'
    assert dotnet_name(encode_dotnet_dn(rname, reverse=False), reverse=False) == rname


def test_empty_name():
    # EdgeCaseEmptyFormat / EncodeEmptyValue: "" <-> 3000
    assert encode_dotnet_dn("").hex().upper() == "3000"
    assert dotnet_name(h("3000")) == ""


# --- X500DistinguishedNameEncodingTests.cs (string -> DER, preferred = Unix encoding) --------------

# SingleRdnTestCases: (input, normalized Format(false) or None = input, preferred DER hex)
SINGLE_RDN = [
    ("CN=Common Name", None, "3016311430120603550403130B436F6D6D6F6E204E616D65"),
    ("CN=Comm\u00f3n Name", None, "30173115301306035504030C0C436F6D6DC3B36E204E616D65"),
    ("E=user@example.com", None, "3021311F301D06092A864886F70D010901161075736572406578616D706C652E636F6D"),
    ("E=Common Name", None, "301C311A301806092A864886F70D010901160B436F6D6D6F6E204E616D65"),
    ("1.1.1.1=Common Name", "OID.1.1.1.1=Common Name", "3016311430120603290101130B436F6D6D6F6E204E616D65"),
    ("OID.1.1.1.1=Common Name", None, "3016311430120603290101130B436F6D6D6F6E204E616D65"),
    ("2.5.4.3=Common Name", "CN=Common Name", "3016311430120603550403130B436F6D6D6F6E204E616D65"),
    ("OID.2.5.4.3=Common Name", "CN=Common Name", "3016311430120603550403130B436F6D6D6F6E204E616D65"),
    ("CN=Common Name,", "CN=Common Name", "3016311430120603550403130B436F6D6D6F6E204E616D65"),
    ('CN="Common Name"', "CN=Common Name", "3016311430120603550403130B436F6D6D6F6E204E616D65"),
    ('CN="Name, Common"', None, "3017311530130603550403130C4E616D652C20436F6D6D6F6E"),
    ('CN="""Common"" Name"', None, "30183116301406035504030C0D22436F6D6D6F6E22204E616D65"),
    ('E="user@example.com"', "E=user@example.com",
     "3021311F301D06092A864886F70D010901161075736572406578616D706C652E636F6D"),
    ('E="""user""@example.com"', None, "30233121301F06092A864886F70D0109011612227573657222406578616D706C652E636F6D"),
    ("CN=\u65E5\u672C\u8A9E", None, "30143112301006035504030C09E697A5E69CACE8AA9E"),
    ("    CN  = Common Name             ", "CN=Common Name", "3016311430120603550403130B436F6D6D6F6E204E616D65"),
    ('CN="Common Name, E=user@example.com"', None,
     "302A3128302606035504030C1F436F6D6D6F6E204E616D652C20453D75736572406578616D706C652E636F6D"),
    ("CN=\u0008", None, "300C310A300806035504030C0108"),
    ("CN=a     \u0008", None, "30123110300E06035504030C0761202020202008"),
    ("CN=", 'CN=""', "300B3109300706035504031300"),
    ('CN="Adjacent Escaped""""Quotes"', None,
     "30233121301F06035504030C1841646A6163656E742045736361706564222251756F746573"),
]

# s_flagVariantTestCases with the flags we implement (None, UseCommas = same, Reversed)
FLAG_CASES = [
    ("CN=Common Name, E=user@example.com", False, "CN=Common Name, E=user@example.com",
     "3037311430120603550403130B436F6D6D6F6E204E616D65311F301D06092A864886F70D010901161075736572406578616D706C652E636F6D"),
    ("CN=Common Name, E=user@example.com", True, "E=user@example.com, CN=Common Name",
     "3037311F301D06092A864886F70D010901161075736572406578616D706C652E636F6D311430120603550403130B436F6D6D6F6E204E616D65"),
    ('CN="Common Name, O=Organization"', False, 'CN="Common Name, O=Organization"',
     "3026312430220603550403131B436F6D6D6F6E204E616D652C204F3D4F7267616E697A6174696F6E"),
    ('CN="Common Name, O=Organization"', True, 'CN="Common Name, O=Organization"',
     "3026312430220603550403131B436F6D6D6F6E204E616D652C204F3D4F7267616E697A6174696F6E"),
    ("CN=@", False, "CN=@", "300C310A300806035504030C0140"),
    ("CN=a\nO=b\rOU=c\r\nL=d\n\n \n", False, 'CN="a\nO=b\rOU=c\r\nL=d"',
     "301A3118301606035504030C0F610A4F3D620D4F553D630D0A4C3D64"),
]

# ParserBoundaryCases (Flags.None)
BOUNDARY = [
    ("CN=,O=", 'CN="", O=""', "3016310930070603550403130031093007060355040A1300"),
    ("  CN=                  ,    O=  ", 'CN="", O=""', "3016310930070603550403130031093007060355040A1300"),
    ('  CN=                ""  ,    O= ""', 'CN="", O=""', "3016310930070603550403130031093007060355040A1300"),
    ('  CN=                ""  ,    O= "" ', 'CN="", O=""', "3016310930070603550403130031093007060355040A1300"),
    ('  CN=                ""  ,    O= "" ,', 'CN="", O=""', "3016310930070603550403130031093007060355040A1300"),
    ('  CN=                ""  ,    O= a', 'CN="", O=a', "30173109300706035504031300310A3008060355040A130161"),
    ('  CN=                ""  ,    O= a ', 'CN="", O=a', "30173109300706035504031300310A3008060355040A130161"),
]


@pytest.mark.parametrize("text,normalized,der", SINGLE_RDN + BOUNDARY)
def test_encode_flags_none(text, normalized, der):
    encoded = encode_dotnet_dn(text, reverse=False)
    assert encoded.hex().upper() == der.upper()
    assert dotnet_name(encoded, reverse=False) == (normalized or text)


@pytest.mark.parametrize("text,reverse,formatted,der", FLAG_CASES)
def test_encode_with_flags(text, reverse, formatted, der):
    encoded = encode_dotnet_dn(text, reverse=reverse)
    assert encoded.hex().upper() == der.upper()
    assert dotnet_name(encoded, reverse=False) == formatted


@pytest.mark.parametrize("text", [
    ",",  # Separator character with no tag
    "\u0008CN=a",  # Control character preceding tag
    "CN\u0008=a",  # Control character after tag
    "C\u0008N=a",  # Control character within tag
    "CN \u0008=a",  # Control character after whitespace after tag
    "1.a.1.3=a",  # Unresolvable OID
    'CN="unterminated',  # Open quote with no close quote
    "E=\u65E5\u672C\u8A9E",  # Non-ASCII values in an E field
    # ParseWithInvalidObjectIdentifiers
    "OID.STREET=abbeyroad", "OID.AGHHHH=internet", "OID.=internet", "OID.99.99=sun", "OID.99.a=sun",
])
def test_invalid_input(text):
    with pytest.raises(BadInput) as exc:
        parse_dotnet_dn(text)
    assert "\n" not in str(exc.value)
    assert "distinguished name" in str(exc.value)


# --- Windows CertStrToName extensions and our own rules ----------------------------------------


def test_plus_separates_multi_valued_rdn_like_certstrtoname():
    # CertStrToName: "a plus sign (+) as the separator in multiple RDN values"; the DER is the
    # PrintMultiComponentRdn vector of X500DistinguishedNameTests.cs.
    assert encode_dotnet_dn("CN=James + O=Microsoft").hex().upper() == \
        "30223120300C060355040313054A616D65733010060355040A13094D6963726F736F6674"
    with pytest.raises(BadInput):
        parse_dotnet_dn("CN=James +")


def test_leading_hash_is_refused_with_a_quote_hint():
    with pytest.raises(BadInput, match='quote it'):
        parse_dotnet_dn("CN=#00")
    assert dotnet_name(encode_dotnet_dn('CN="#00"')) == 'CN="#00"'


def test_two_separators_in_a_row():
    with pytest.raises(BadInput):
        parse_dotnet_dn("CN=a,,O=b")


def test_powershell_style_subject_renders_as_written():
    # [WODTKE-2026]: New-SelfSignedCertificate -Subject "E=$email,CN=$commonName" -> nuget sign shows
    # "Subject Name: E=MariusWodtke@MariusWodtkeMVP.onmicrosoft.com, CN=MariusWodtkeMVP" (domain-spec §1.2)
    name = parse_dotnet_dn("E=MariusWodtke@MariusWodtkeMVP.onmicrosoft.com,CN=MariusWodtkeMVP")
    assert dotnet_name(name) == "E=MariusWodtke@MariusWodtkeMVP.onmicrosoft.com, CN=MariusWodtkeMVP"
    # DER order is the reverse of the written order: CN first.
    assert [rdn.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME) != [] for rdn in name.rdns] == [True, False]


def _self_signed(name: x509.Name) -> x509.Certificate:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))


def test_certificate_names_come_from_the_wire(pki):
    # The leaf's issuer field is the intermediate's subject field, byte for byte (RFC 5280 §4.1.2.4).
    issuer_der, subject_der = certificate_name_ders(pki.leaf.cert)
    assert issuer_der == certificate_name_ders(pki.intermediate.cert)[1]
    assert subject_der == pki.leaf.cert.subject.public_bytes()
    # tests/pki.py writes O then CN (DER order); .NET shows them reversed.
    assert certificate_subject(pki.leaf.cert) == "CN=Contoso Plug-in Signing, O=ppmi-build tests"
    assert certificate_issuer(pki.leaf.cert) == "CN=ppmi-build Test Code Signing CA, O=ppmi-build tests"
    assert common_names(subject_der) == ["Contoso Plug-in Signing"]


# --- interop: Mono's X509Certificate2.Subject/Issuer as a second opinion ------------------------

MONO_SRC = r"""
using System;
using System.Security.Cryptography.X509Certificates;
class P {
  static void Main(string[] a) {
    foreach (var path in a) {
      var c = new X509Certificate2(path); Console.WriteLine(c.Subject); Console.WriteLine(c.Issuer);
    }
  }
}
"""


@pytest.fixture(scope="session")
def mono_subject(tmp_path_factory):
    """Compile a tiny Mono program printing X509Certificate2.Subject and .Issuer of .cer files.

    Mono's renderer (Mono.Security X501) imitates Windows for plain names (CN, O, OU, L, S, C, E,
    STREET, SERIALNUMBER; reversed, ", "), but differs in edge cases (multi-valued RDNs, quote
    doubling, PostalCode), so it is only used on plain names."""
    mcs = require_tool("mcs")
    require_tool("mono")
    folder = tmp_path_factory.mktemp("mono-dn")
    (folder / "dn.cs").write_text(MONO_SRC)
    subprocess.run([mcs, "-nologo", "-r:System.dll", f"-out:{folder / 'dn.exe'}", str(folder / "dn.cs")], check=True,
                   capture_output=True)

    def run(*paths):
        r = run_tool("mono", folder / "dn.exe", *paths)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        return [(lines[i], lines[i + 1]) for i in range(0, len(lines), 2)]

    return run


@pytest.mark.interop
def test_mono_agrees_on_plain_names(pki, mono_subject, tmp_path):
    # An OpenSSL-made certificate as in [KT-CN]: -subj "/CN=MyPlugin-Test/O=MyOrg-AIA/C=CN" -> DER order
    # CN, O, C, so .NET shows "C=CN, O=MyOrg-AIA, CN=MyPlugin-Test" (domain-spec §1.2 caution).
    key = tmp_path / "k.pem"
    cer = tmp_path / "kt.cer"
    r = run_tool("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-outform", "DER",
                 "-out", cer, "-days", "2", "-subj", "/CN=MyPlugin-Test/O=MyOrg-AIA/C=CN")
    assert r.returncode == 0, r.stderr
    # Plain names with S=, L=, OU=, STREET=, SERIALNUMBER= and E= written the PowerShell way.
    extra = tmp_path / "extra.cer"
    extra.write_bytes(_self_signed(parse_dotnet_dn(
        "E=ops@contoso.example, CN=Contoso Ops, OU=Platform, O=Contoso Ltd, STREET=1 Main St, L=Redmond, "
        "S=Washington, C=US, SERIALNUMBER=42")).public_bytes(serialization.Encoding.DER))
    paths = [cer, extra, pki.leaf.cer, pki.self_signed.cer, pki.root.cer]
    ours = [(certificate_subject(x509.load_der_x509_certificate(p.read_bytes())),
             certificate_issuer(x509.load_der_x509_certificate(p.read_bytes()))) for p in paths]
    assert mono_subject(*paths) == ours
    assert ours[0] == ("C=CN, O=MyOrg-AIA, CN=MyPlugin-Test",) * 2
    assert ours[1][0] == ("E=ops@contoso.example, CN=Contoso Ops, OU=Platform, O=Contoso Ltd, STREET=1 Main St, "
                          "L=Redmond, S=Washington, C=US, SERIALNUMBER=42")
