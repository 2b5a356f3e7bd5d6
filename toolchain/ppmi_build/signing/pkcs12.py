"""A fast PKCS#12 (PFX) reader for the common shapes, with ``cryptography``'s loader as the fallback.

Why: ``cryptography.hazmat.primitives.serialization.pkcs12.load_key_and_certificates`` lets
OpenSSL 3 validate an RSA private key (primality checks of p and q), which costs 50 ms (RSA-2048)
to 150 ms (RSA-3072) per load: more than signing a 16 MiB assembly (issue #2). The pkcs12 loader
has no switch to skip it; ``load_der_private_key(..., unsafe_skip_rsa_key_validation=True)`` has.
This module decodes the PFX container itself and hands the (still encrypted) PKCS#8 key to
``load_der_private_key`` with that switch.

Skipping the validation is safe *here* only because every signature ppmi-build makes with such a
key is verified against the signer certificate's public key before the signed file replaces the
original (:mod:`ppmi_build.signing.api`: ``verify_signed_image`` / ``verify_pe`` /
``nuget.verify_package`` check the RSA signature cryptographically), so a corrupt key cannot
produce an accepted signature; and OpenSSL's RSA-CRT signing re-checks its result with the public
exponent (``rsa_ossl_mod_exp``), so a bad CRT parameter cannot leak the key through a faulty
signature either. The file is the user's own signing key, not untrusted input.

What is handled (RFC 7292; anything else returns ``None`` and the caller uses cryptography's loader):

* ``PFX { version 3, authSafe ContentInfo(data), macData }`` (RFC 7292 §4) in DER (definite lengths);
* the integrity MAC (§5, Appendix B): HMAC with a key from the PKCS#12 KDF (ID 3) over the
  authSafe content octets, SHA-1/224/256/384/512 — checked before the key is decrypted or any
  result is used, so a wrong password or a modified file is detected as before; a file without
  ``macData`` (or with PBMAC1) falls back;
* the key: exactly one ``keyBag`` / ``pkcs8ShroudedKeyBag``, decrypted by ``load_der_private_key``
  (which reads PBES2 and the PKCS#12 PBEs of RFC 7292 Appendix C);
* the certificates (``certBag`` with an X.509 certificate; other bag types are ignored, as
  cryptography ignores them): from ``data`` safes directly; from ``encryptedData`` safes (RFC 5652
  §8) encrypted with PBES2 (RFC 8018 §6.2: PBKDF2 with HMAC-SHA-1/224/256/384/512 and
  AES-128/192/256-CBC or DES-EDE3-CBC) by this module, in a helper thread while the key is
  decrypted (PBKDF2 runs without the GIL); safes encrypted otherwise — pbeWithSHAAnd3-KeyTripleDES-CBC
  (what ``ppmi-build cert new`` and Windows write), pbeWithSHA1And40BitRC2-CBC (``openssl pkcs12
  -export -legacy``) — are handed to cryptography's loader as a PFX holding only those safes (no
  key, so nothing to validate; its PKCS#12 KDF runs in native code, which a Python loop of 50,000
  SHA-1 iterations could not match).

Password encoding as OpenSSL does it: the PKCS#12 KDF takes the password as a BMPString (UTF-16BE)
with a two-byte NUL terminator (RFC 7292 Appendix B.1); PBKDF2 takes the UTF-8 bytes as given.
No password / an empty password falls back (cryptography's loader tries the encodings OpenSSL uses).
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["load_key_and_certificates"]

# OIDs as DER contents octets (what a TLV reader sees), named after RFC 7292 / RFC 8018 / RFC 5652
_OID_DATA = bytes.fromhex("2a864886f70d010701")  # 1.2.840.113549.1.7.1
_OID_ENCRYPTED_DATA = bytes.fromhex("2a864886f70d010706")  # 1.2.840.113549.1.7.6
_OID_KEY_BAG = bytes.fromhex("2a864886f70d010c0a0101")  # 1.2.840.113549.1.12.10.1.1
_OID_SHROUDED_KEY_BAG = bytes.fromhex("2a864886f70d010c0a0102")  # 1.2.840.113549.1.12.10.1.2
_OID_CERT_BAG = bytes.fromhex("2a864886f70d010c0a0103")  # 1.2.840.113549.1.12.10.1.3
_OID_SAFE_CONTENTS_BAG = bytes.fromhex("2a864886f70d010c0a0106")  # 1.2.840.113549.1.12.10.1.6
_OID_X509_CERTIFICATE = bytes.fromhex("2a864886f70d01091601")  # 1.2.840.113549.1.9.22.1
_OID_LOCAL_KEY_ID = bytes.fromhex("2a864886f70d010915")  # 1.2.840.113549.1.9.21
_OID_PBES2 = bytes.fromhex("2a864886f70d01050d")  # 1.2.840.113549.1.5.13
_OID_PBKDF2 = bytes.fromhex("2a864886f70d01050c")  # 1.2.840.113549.1.5.12
#: digest AlgorithmIdentifier OIDs (RFC 5754 §2, RFC 3279) -> hashlib name
_DIGESTS = {
    bytes.fromhex("2b0e03021a"): "sha1",
    bytes.fromhex("608648016503040204"): "sha224",
    bytes.fromhex("608648016503040201"): "sha256",
    bytes.fromhex("608648016503040202"): "sha384",
    bytes.fromhex("608648016503040203"): "sha512",
}
#: PBKDF2 PRF OIDs (RFC 8018 Appendix B.1) -> hashlib name; the default is hmacWithSHA1
_PRFS = {
    bytes.fromhex("2a864886f70d0207"): "sha1",
    bytes.fromhex("2a864886f70d0208"): "sha224",
    bytes.fromhex("2a864886f70d0209"): "sha256",
    bytes.fromhex("2a864886f70d020a"): "sha384",
    bytes.fromhex("2a864886f70d020b"): "sha512",
}
#: PBES2 encryption schemes (RFC 8018 Appendix B.2; NIST AES OIDs) -> (cipher, key bytes)
_SCHEMES = {
    bytes.fromhex("608648016503040102"): ("aes", 16),  # aes128-CBC
    bytes.fromhex("608648016503040116"): ("aes", 24),  # aes192-CBC
    bytes.fromhex("60864801650304012a"): ("aes", 32),  # aes256-CBC
    bytes.fromhex("2a864886f70d0307"): ("3des", 24),  # des-ede3-cbc
}
#: upper bound for iteration counts we run (the MAC's PKCS#12 KDF is a Python loop)
_MAX_MAC_ITERATIONS = 100_000
_MAX_PBKDF2_ITERATIONS = 10_000_000


class _Unsupported(Exception):
    """The file is not in a shape this reader handles (the caller falls back)."""


# --- a minimal DER reader (X.690 §8.1: single-byte tags, definite lengths) -------------------


def _tlv(data: bytes, pos: int, end: int | None = None) -> tuple[int, int, int]:
    """``(tag, contents_start, contents_end)`` of the TLV at ``pos``."""
    end = len(data) if end is None else end
    if pos + 2 > end:
        raise _Unsupported("truncated")
    tag, first = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise _Unsupported("multi-byte tag")
    if first < 0x80:
        start, length = pos + 2, first
    elif first == 0x80 or first > 0x84:
        raise _Unsupported("indefinite or oversized length (BER)")
    else:
        k = first & 0x7F
        start = pos + 2 + k
        length = int.from_bytes(data[pos + 2:start], "big")
    if start + length > end:
        raise _Unsupported("truncated")
    return tag, start, start + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    pos = start
    while pos < end:
        t = _tlv(data, pos, end)
        out.append(t)
        pos = t[2]
    return out


def _expect(data: bytes, t: tuple[int, int, int], tag: int) -> bytes:
    if t[0] != tag:
        raise _Unsupported(f"tag 0x{t[0]:02x} where 0x{tag:02x} was expected")
    return data[t[1]:t[2]]


def _seq(data: bytes, t: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    if t[0] != 0x30:
        raise _Unsupported("SEQUENCE expected")
    return _children(data, t[1], t[2])


def _int(data: bytes, t: tuple[int, int, int]) -> int:
    return int.from_bytes(_expect(data, t, 0x02), "big", signed=True)


def _octets(data: bytes, t: tuple[int, int, int]) -> bytes:
    """An OCTET STRING's value: primitive (0x04), or constructed (0x24) from primitive segments."""
    if t[0] == 0x04:
        return data[t[1]:t[2]]
    if t[0] == 0x24:
        return b"".join(_octets(data, c) for c in _children(data, t[1], t[2]))
    raise _Unsupported("OCTET STRING expected")


def _der(tag: int, contents: bytes) -> bytes:
    n = len(contents)
    if n < 0x80:
        return bytes([tag, n]) + contents
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(body)]) + body + contents


# --- key derivation and decryption ------------------------------------------------------------


def pkcs12_kdf(hash_name: str, password: bytes, salt: bytes, iterations: int, id_byte: int, n: int) -> bytes:
    """The PKCS#12 key derivation function (RFC 7292 Appendix B.2).

    Args:
        hash_name: hashlib name of H (``sha1``, ``sha256``...).
        password: the password as a BMPString with its two-byte NUL terminator (Appendix B.1).
        salt / iterations: from the PBE parameters or MacData.
        id_byte: 1 = encryption key, 2 = IV, 3 = MAC key (Appendix B.3).
        n: bytes wanted.
    Returns:
        ``n`` derived bytes.
    """
    ctor = getattr(hashlib, hash_name)  # the named constructor: much cheaper per call than hashlib.new
    h = ctor()
    u, v = h.digest_size, h.block_size
    d = bytes([id_byte]) * v

    def fill(x: bytes) -> bytes:  # x repeated to v * ceil(len(x) / v) bytes
        if not x:
            return b""
        size = v * -(-len(x) // v)
        return (x * (size // len(x) + 1))[:size]

    i_buf = bytearray(fill(salt) + fill(password))
    out = b""
    for _ in range(-(-n // u)):
        a = ctor(d + i_buf).digest()
        for _ in range(iterations - 1):
            a = ctor(a).digest()
        out += a
        if len(out) >= n:
            break
        b = int.from_bytes((a * (v // u + 1))[:v], "big") + 1
        for j in range(0, len(i_buf), v):  # I_j = (I_j + B + 1) mod 2^(8v)
            block = (int.from_bytes(i_buf[j:j + v], "big") + b) & ((1 << (8 * v)) - 1)
            i_buf[j:j + v] = block.to_bytes(v, "big")
    return out[:n]


def _pbes2_decrypt(data: bytes, alg: tuple[int, int, int], ciphertext: bytes, password: bytes) -> bytes:
    """Decrypt with PBES2 (RFC 8018 §6.2.2) described by the AlgorithmIdentifier TLV ``alg``; the
    password goes to PBKDF2 as its UTF-8 bytes (as OpenSSL does)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    parts = _seq(data, alg)
    if _expect(data, parts[0], 0x06) != _OID_PBES2:
        raise _Unsupported("not PBES2")
    kdf_t, scheme_t = _seq(data, parts[1])[:2]  # PBES2-params (RFC 8018 Appendix A.4)
    kdf = _seq(data, kdf_t)
    if _expect(data, kdf[0], 0x06) != _OID_PBKDF2:
        raise _Unsupported("PBES2 key derivation other than PBKDF2")
    params = _seq(data, kdf[1])  # PBKDF2-params (RFC 8018 Appendix A.2)
    salt, iterations = _octets(data, params[0]), _int(data, params[1])
    key_length = None
    prf = "sha1"
    for t in params[2:]:
        if t[0] == 0x02:
            key_length = _int(data, t)
        elif t[0] == 0x30:
            prf_oid = _expect(data, _seq(data, t)[0], 0x06)
            if prf_oid not in _PRFS:
                raise _Unsupported("unknown PBKDF2 PRF")
            prf = _PRFS[prf_oid]
    scheme = _seq(data, scheme_t)
    scheme_oid = _expect(data, scheme[0], 0x06)
    if scheme_oid not in _SCHEMES or len(scheme) < 2:
        raise _Unsupported("unknown PBES2 encryption scheme")
    cipher, size = _SCHEMES[scheme_oid]
    if (key_length is not None and key_length != size) or not 0 < iterations <= _MAX_PBKDF2_ITERATIONS:
        raise _Unsupported("PBKDF2 parameters")
    iv = _octets(data, scheme[1])
    key = hashlib.pbkdf2_hmac(prf, password, salt, iterations, size)  # runs without the GIL
    algorithm: algorithms.BlockCipherAlgorithm
    if cipher == "aes":
        algorithm = algorithms.AES(key)
    else:
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES

        algorithm = TripleDES(key)
    block = algorithm.block_size // 8
    if len(iv) != block or not ciphertext or len(ciphertext) % block:
        raise _Unsupported("bad IV or ciphertext length")
    dec = Cipher(algorithm, modes.CBC(iv)).decryptor()
    plain = dec.update(ciphertext) + dec.finalize()
    pad = plain[-1]  # PKCS#7 padding (RFC 8018 §6.1.1 step 4)
    if not 1 <= pad <= block or plain[-pad:] != bytes([pad]) * pad:
        raise _Unsupported("bad padding")
    return plain[:-pad]


# --- the container ----------------------------------------------------------------------------


def _check_mac(data: bytes, mac_t: tuple[int, int, int], auth_content: bytes, bmp: bytes) -> bool:
    """RFC 7292 §5 / Appendix B.4: MacData ::= SEQUENCE { mac DigestInfo, macSalt, iterations DEFAULT 1 };
    the MAC is HMAC(KDF(ID=3, password, macSalt, iterations), authSafe content octets)."""
    mac_parts = _seq(data, mac_t)
    digest_info = _seq(data, mac_parts[0])
    digest_alg = _seq(data, digest_info[0])
    name = _DIGESTS.get(_expect(data, digest_alg[0], 0x06))
    if name is None:
        raise _Unsupported("MAC digest")  # e.g. PBMAC1 (RFC 9579)
    expected = _octets(data, digest_info[1])
    salt = _octets(data, mac_parts[1])
    iterations = _int(data, mac_parts[2]) if len(mac_parts) > 2 else 1
    if not 0 < iterations <= _MAX_MAC_ITERATIONS:
        raise _Unsupported("MAC iteration count")
    key = pkcs12_kdf(name, bmp, salt, iterations, 3, hashlib.new(name).digest_size)
    return hmac.compare_digest(hmac.new(key, auth_content, name).digest(), expected)


def _encrypted_content(data: bytes, inner: tuple[int, int, int]) -> tuple[tuple[int, int, int], bytes]:
    """(contentEncryptionAlgorithm TLV, ciphertext) of an EncryptedData (RFC 5652 §8:
    ``SEQUENCE { version, EncryptedContentInfo { contentType, algorithm, [0] IMPLICIT OCTET STRING } }``)."""
    ed = _seq(data, inner)
    eci = _seq(data, ed[1])
    if _expect(data, eci[0], 0x06) != _OID_DATA or len(eci) < 3:
        raise _Unsupported("encrypted content is not data")
    enc_t = eci[2]
    if enc_t[0] == 0x80:
        return eci[1], data[enc_t[1]:enc_t[2]]
    if enc_t[0] == 0xA0:
        return eci[1], b"".join(_octets(data, c) for c in _children(data, enc_t[1], enc_t[2]))
    raise _Unsupported("encryptedContent")


def _local_key_id(data: bytes, bag: list[tuple[int, int, int]]) -> bytes | None:
    if len(bag) < 3 or bag[2][0] != 0x31:
        return None
    for attr_t in _children(data, bag[2][1], bag[2][2]):
        attr = _seq(data, attr_t)
        if _expect(data, attr[0], 0x06) == _OID_LOCAL_KEY_ID and attr[1][0] == 0x31:
            values = _children(data, attr[1][1], attr[1][2])
            if values:
                return _octets(data, values[0])
    return None


def _bags(sc: bytes, keys: list, certs: list) -> None:
    """Collect the key bags (DER, shrouded?, localKeyId) and X.509 certBags (DER, localKeyId) of a
    SafeContents (RFC 7292 §4.2)."""
    for bag_t in _seq(sc, _tlv(sc, 0)):
        bag = _seq(sc, bag_t)
        bag_id = _expect(sc, bag[0], 0x06)
        if bag[1][0] != 0xA0:
            raise _Unsupported("bagValue")
        if bag_id in (_OID_KEY_BAG, _OID_SHROUDED_KEY_BAG):
            # bagValue [0] EXPLICIT holds exactly the (Encrypted)PrivateKeyInfo TLV
            keys.append((sc[bag[1][1]:bag[1][2]], bag_id == _OID_SHROUDED_KEY_BAG, _local_key_id(sc, bag)))
        elif bag_id == _OID_CERT_BAG:
            cert_bag = _seq(sc, _children(sc, bag[1][1], bag[1][2])[0])
            if _expect(sc, cert_bag[0], 0x06) != _OID_X509_CERTIFICATE or cert_bag[1][0] != 0xA0:
                continue  # sdsiCertificate etc.: cryptography ignores them too
            octets_t = _children(sc, cert_bag[1][1], cert_bag[1][2])[0]
            certs.append((_octets(sc, octets_t), _local_key_id(sc, bag)))
        elif bag_id == _OID_SAFE_CONTENTS_BAG:
            raise _Unsupported("nested SafeContents")


def _parse(data: bytes, password: bytes):
    import threading

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_der_private_key

    try:
        bmp = password.decode("utf-8").encode("utf-16-be") + b"\0\0"  # RFC 7292 Appendix B.1
    except UnicodeDecodeError:
        raise _Unsupported("password is not UTF-8") from None
    top = _tlv(data, 0)
    if top[2] != len(data):
        raise _Unsupported("trailing data")
    pfx = _seq(data, top)
    if len(pfx) != 3 or _int(data, pfx[0]) != 3:  # version v3, macData present
        raise _Unsupported("version or no MAC")
    auth = _seq(data, pfx[1])
    if _expect(data, auth[0], 0x06) != _OID_DATA or auth[1][0] != 0xA0:
        raise _Unsupported("authSafe is not data (public-key integrity mode)")
    auth_content = _octets(data, _children(data, auth[1][1], auth[1][2])[0])

    keys: list[tuple[bytes, bool, bytes | None]] = []
    # per AuthenticatedSafe entry, in file order: its certificates [(DER or object, localKeyId)]
    groups: list[list] = []
    pbes2: list[tuple[tuple[int, int, int], bytes, list]] = []  # encrypted safes we decrypt
    native: list[tuple[bytes, list]] = []  # safes left to cryptography: (ContentInfo TLV, its group)
    _, pos, safes_end = _tlv(auth_content, 0)  # AuthenticatedSafe ::= SEQUENCE OF ContentInfo
    while pos < safes_end:
        ci_t = _tlv(auth_content, pos, safes_end)
        ci_der, pos = auth_content[pos:ci_t[2]], ci_t[2]
        ci = _seq(auth_content, ci_t)
        ctype = _expect(auth_content, ci[0], 0x06)
        if len(ci) < 2 or ci[1][0] != 0xA0:
            raise _Unsupported("ContentInfo without content")
        inner = _children(auth_content, ci[1][1], ci[1][2])[0]
        group: list = []
        groups.append(group)
        if ctype == _OID_DATA:
            _bags(_octets(auth_content, inner), keys, group)
        elif ctype == _OID_ENCRYPTED_DATA:
            alg, ciphertext = _encrypted_content(auth_content, inner)
            if _expect(auth_content, _seq(auth_content, alg)[0], 0x06) == _OID_PBES2:
                pbes2.append((alg, ciphertext, group))
            else:
                native.append((ci_der, group))
        else:
            raise _Unsupported("envelopedData or another content type")
    if len(keys) != 1:
        raise _Unsupported("no key, several keys, or a key in an encrypted safe")  # rare: the fallback

    # The certificate safes are decrypted in helper threads (PBKDF2 and OpenSSL's PKCS#12 KDF run
    # without the GIL) while this thread checks the MAC and decrypts the key; a failed MAC discards
    # whatever they produced.
    errors: list[BaseException] = []

    def guarded(fn, *args) -> None:
        try:
            fn(*args)
        except BaseException as e:  # turned into a fallback below
            errors.append(e)

    def decrypt_safe(alg, ciphertext, group) -> None:
        extra_keys: list = []
        _bags(_pbes2_decrypt(auth_content, alg, ciphertext, password), extra_keys, group)
        if extra_keys:
            raise _Unsupported("a key inside an encrypted safe")

    jobs = [threading.Thread(target=guarded, args=(decrypt_safe, *job), name="pfx-certs") for job in pbes2]
    if native:
        jobs.append(threading.Thread(target=guarded, args=(_load_native, native, password), name="pfx-certs"))
    for job in jobs:
        job.start()
    try:
        if not _check_mac(data, pfx[2], auth_content, bmp):
            return "bad-mac"
        key_der, shrouded, key_id = keys[0]
        try:
            # RSA key validation skipped: see the module docstring (every signature is verified after)
            key = load_der_private_key(key_der, password if shrouded else None, unsafe_skip_rsa_key_validation=True)
        except (ValueError, TypeError):
            raise _Unsupported("key not readable") from None
    finally:
        for job in jobs:
            job.join()
    if errors:
        raise _Unsupported(f"certificate safe: {errors[0]}")
    try:
        loaded = [(c if isinstance(c, x509.Certificate) else x509.load_der_x509_certificate(c), lkid)
                  for group in groups for c, lkid in group]
    except ValueError:
        raise _Unsupported("certificate not readable") from None
    leaf = None
    if key_id is not None:
        leaf = next((c for c, lkid in loaded if lkid == key_id), None)
    if leaf is None:
        pub = key.public_key()
        leaf = next((c for c, _ in loaded if c.public_key() == pub), None)
    return key, leaf, [c for c, _ in loaded if c is not leaf]


def _load_native(native: list[tuple[bytes, list]], password: bytes) -> None:
    """Let cryptography decrypt safes we do not (PKCS#12 PBEs: 3DES, RC2, RC4): a PFX holding only
    those safes, no key and no MAC (already checked on the real file), so no key validation runs.
    Fills each safe's certificate group (cryptography returns them in file order)."""
    from cryptography.hazmat.primitives.serialization import pkcs12

    for ci_der, group in native:
        auth_safe = _der(0x30, ci_der)
        pfx = _der(0x30, b"\x02\x01\x03" + _der(0x30, bytes.fromhex("06092a864886f70d010701")
                                                    + _der(0xA0, _der(0x04, auth_safe))))
        key, cert, others = pkcs12.load_key_and_certificates(pfx, password)
        if key is not None:
            raise _Unsupported("a key inside an encrypted safe")
        group.extend((c, None) for c in ([cert] if cert else []) + list(others))


def load_key_and_certificates(data: bytes, password: bytes | None):
    """Decode a PFX the fast way, or say it cannot.

    Args:
        data: the DER PFX.
        password: its password (bytes, as given by the user); None or empty -> not handled here.
    Returns:
        ``(private_key, certificate_or_None, [other certificates])`` like
        ``cryptography...pkcs12.load_key_and_certificates`` (``certificate`` is the one whose
        localKeyId or public key matches the key), or ``None`` when the file is in a shape this
        reader does not handle *or the MAC does not verify* (wrong password): the caller then uses
        cryptography's loader, which gives the authoritative answer and error.
    Raises:
        Nothing: anything unexpected returns None.
    """
    if not password:
        return None
    data = bytes(data)
    try:
        got = _parse(data, password)
    except Exception:  # _Unsupported, or anything unexpected: cryptography's loader decides
        return None
    return None if got == "bad-mac" else got
