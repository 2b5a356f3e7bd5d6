"""Key URI parsing (``ppmi_build.signing.keys.uri``) on the examples of RFC 7512 §3 and the cloud URI forms."""

from __future__ import annotations

import pytest

from ppmi_build.errors import KeyUriError
from ppmi_build.signing.keys.uri import KeyVaultUri, TrustedSigningUri, is_key_uri, parse_key_uri


def test_rfc7512_examples():
    u = parse_key_uri("pkcs11:object=my-sign-key;type=private?module-path=/mnt/libmypkcs11.so.1")
    assert (u.object, u.type, u.module_path) == ("my-sign-key", "private", "/mnt/libmypkcs11.so.1")
    u = parse_key_uri("pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;"
                      "model=1.0;object=my-sign-key;type=private;id=%69%95%3E%5C%F4%BD%EC%91;serial=")
    assert u.token == "The Software PKCS#11 Softtoken" and u.manufacturer == "Snake Oil, Inc."
    assert u.model == "1.0" and u.serial == "" and u.id == bytes.fromhex("69953e5cf4bdec91")
    u = parse_key_uri("pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-key")
    assert u.token == "A name with a substring %;"
    u = parse_key_uri("pkcs11:slot-description=Sun%20Metaslot;slot-id=3;object=k;x-vendor=1")
    assert (u.slot_description, u.slot_id) == ("Sun Metaslot", 3)


@pytest.mark.parametrize(("uri", "fragment"), [
    ("pkcs11:token=Software%20PKCS%2311%20softtoken;object=k?pin-value=the-pin", "carries pin-value"),
    ("pkcs11:object=k?pin-source=file:/etc/token_pin", "carries pin-source"),
    ("pkcs11:token=T", "names no key"),
    ("pkcs11:token=T;object=k;object=j", "appears twice"),
    ("pkcs11:token=T;colour=red;object=k", "unknown path attribute 'colour'"),
    ("pkcs11:token=T;object=k;type=cert", "does not name a private key"),
    ("pkcs11:token=T;id=%zz", "two hex digits"),
    ("pkcs11:token=T;object=k;slot-id=one", "slot-id='one' is not a decimal number"),
    ("pkcs11:token=T;objectk", "is not NAME=VALUE"),
    ("keyvault:https://v.vault.azure.net/keys/c", "/certificates/NAME"),
    ("keyvault:http://v.vault.azure.net/certificates/c", "must start with https://"),
    ("trustedsigning:https://weu.codesigning.azure.net/acct", "/ACCOUNT/PROFILE"),
    ("trustedsigning:https://weu.codesigning.azure.net/acct/pr_of", "may hold only letters"),
])
def test_malformed_uris_are_one_line(uri, fragment):
    with pytest.raises(KeyUriError, match=None) as err:
        parse_key_uri(uri)
    assert fragment in err.value.message and "\n" not in err.value.message and err.value.exit_code == 2
    assert "the-pin" not in err.value.message


def test_pin_value_never_quoted():
    with pytest.raises(KeyUriError) as err:
        parse_key_uri("pkcs11:bogus=1?pin-value=s3cret")
    assert "s3cret" not in err.value.message


def test_cloud_forms():
    assert parse_key_uri("keyvault:https://v.vault.azure.net/certificates/sign-cert/0123abc") == KeyVaultUri(
        text="keyvault:https://v.vault.azure.net/certificates/sign-cert/0123abc",
        vault_url="https://v.vault.azure.net", name="sign-cert", version="0123abc")
    ts = parse_key_uri("trustedsigning:https://weu.codesigning.azure.net/contoso/release")
    assert ts == TrustedSigningUri(text=ts.text, endpoint="https://weu.codesigning.azure.net", account="contoso",
                                   profile="release")
    assert parse_key_uri("keyvault:http://127.0.0.1:8443/certificates/c").vault_url == "http://127.0.0.1:8443"
    assert is_key_uri("PKCS11:object=k") and not is_key_uri("key.pem") and not is_key_uri("C:\\keys\\k.pem")
