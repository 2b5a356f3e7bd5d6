"""Strong-name keys (``.snk``) and public key tokens, in pure Python.

A ``.snk`` key pair is a CryptoAPI **PRIVATEKEYBLOB**; an assembly's strong-name public key
(the ``Assembly`` table's ``PublicKey`` blob, and what ``sn -p`` writes) is a small header
followed by a CryptoAPI **PUBLICKEYBLOB**. The public key token is the last 8 bytes of the
SHA-1 of that strong-name public key blob, in reverse order.

Sources (signing-spec §6.3):

* Key blob layouts: https://learn.microsoft.com/en-us/windows/win32/seccrypto/base-provider-key-blobs
  (``PUBLICKEYSTRUC`` + ``RSAPUBKEY`` + modulus / primes / exponents / coefficient /
  private exponent, all little-endian).
* Strong-name public key blob (``SigAlgId``, ``HashAlgId``, ``cbPublicKey``, key) and the token:
  ECMA-335 6th ed. §II.6.2.1.3 and §II.22.2 (Assembly.PublicKey), and the managed reference
  https://source.dot.net/Microsoft.DotNet.SignTool/src/StrongName.cs.html.

Verified against Mono ``sn -p``/``sn -tp``/``sn -v`` and ``mcs -keyfile:`` in ``tests/interop/test_snk.py``.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from ..errors import InputFileError
from ..fileio import atomic_write

# PUBLICKEYSTRUC.bType values (wincrypt.h)
PUBLICKEYBLOB = 0x06
PRIVATEKEYBLOB = 0x07
CUR_BLOB_VERSION = 0x02
# ALG_ID values (wincrypt.h): RSA signature key / RSA key-exchange key; SHA-1 for HashAlgId
CALG_RSA_SIGN = 0x00002400
CALG_RSA_KEYX = 0x0000A400
CALG_SHA1 = 0x00008004
MAGIC_RSA1 = b"RSA1"  # public key
MAGIC_RSA2 = b"RSA2"  # private key

#: Key sizes ``generate_snk`` accepts (Mono/.NET ``sn -k`` default is 1024; prefer 2048+, signing-spec §6.3).
SNK_BITS = (1024, 2048, 3072, 4096)

_HEADER = struct.Struct("<BBHI4sII")  # PUBLICKEYSTRUC (bType, bVersion, reserved, aiKeyAlg) + RSAPUBKEY
_SN_HEADER = struct.Struct("<III")  # SigAlgId, HashAlgId, cbPublicKey


class SnkFormatError(InputFileError):
    """The bytes are not a CryptoAPI RSA key blob / strong-name public key (exit code 2)."""


def _le(n: int, size: int) -> bytes:
    return n.to_bytes(size, "little")


def snk_from_private_key(key: rsa.RSAPrivateKey) -> bytes:
    """Serialise an RSA private key as a ``.snk`` (CryptoAPI PRIVATEKEYBLOB, CALG_RSA_SIGN).

    Layout (base-provider-key-blobs, "Private key BLOBs"): ``PUBLICKEYSTRUC{bType=0x07,
    bVersion=0x02, reserved=0, aiKeyAlg=0x2400}``, ``RSAPUBKEY{magic="RSA2", bitlen, pubexp}``,
    then modulus[bitlen/8], prime1[bitlen/16], prime2[bitlen/16], exponent1[bitlen/16]
    (d mod (p-1)), exponent2[bitlen/16] (d mod (q-1)), coefficient[bitlen/16] (q^-1 mod p),
    privateExponent[bitlen/8]; every integer little-endian, zero-padded to its field width.

    Raises:
        ValueError: the key size is not a multiple of 16 bits or a prime is wider than bitlen/2.
    """
    bits = key.key_size
    if bits % 16:
        raise ValueError(f"RSA key size {bits} is not a multiple of 16 bits")
    pn = key.private_numbers()
    pub = pn.public_numbers
    half = bits // 16
    if max(pn.p, pn.q).bit_length() > bits // 2:
        raise ValueError("RSA primes are wider than half the modulus; cannot store them in a PRIVATEKEYBLOB")
    # CryptoAPI expects prime1 > prime2 is not required; coefficient is q^-1 mod p = iqmp.
    return b"".join(
        (
            _HEADER.pack(PRIVATEKEYBLOB, CUR_BLOB_VERSION, 0, CALG_RSA_SIGN, MAGIC_RSA2, bits, pub.e),
            _le(pub.n, bits // 8),
            _le(pn.p, half),
            _le(pn.q, half),
            _le(pn.dmp1, half),
            _le(pn.dmq1, half),
            _le(pn.iqmp, half),
            _le(pn.d, bits // 8),
        )
    )


def generate_snk(bits: int = 2048) -> bytes:
    """A new strong-name key pair (``.snk`` bytes: CryptoAPI PRIVATEKEYBLOB, public exponent 65537).

    Args:
        bits: RSA modulus size, one of :data:`SNK_BITS` (default 2048).
    Raises:
        ValueError: ``bits`` is not one of :data:`SNK_BITS`.
    """
    if bits not in SNK_BITS:
        raise ValueError(f"strong-name key size {bits} is not supported; use one of {', '.join(map(str, SNK_BITS))}")
    while True:
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        pn = key.private_numbers()
        if max(pn.p, pn.q).bit_length() <= bits // 2:  # OpenSSL always gives bits/2-bit primes; be safe
            return snk_from_private_key(key)


def _parse_header(data: bytes, what: str) -> tuple[int, int, bytes, int, int]:
    if len(data) < _HEADER.size:
        raise SnkFormatError(f"{what} is too short ({len(data)} bytes) to be a CryptoAPI RSA key blob")
    btype, version, _reserved, alg, magic, bits, exp = _HEADER.unpack_from(data)
    if btype not in (PUBLICKEYBLOB, PRIVATEKEYBLOB) or version != CUR_BLOB_VERSION:
        raise SnkFormatError(
            f"{what} is not a strong-name key (blob type 0x{btype:02x}, version {version}); "
            "expected a .snk from `sn -k`/`ppmi-build snk new` or a public key from `sn -p`"
        )
    if alg not in (CALG_RSA_SIGN, CALG_RSA_KEYX):
        raise SnkFormatError(f"{what} has key algorithm 0x{alg:08x}; only RSA strong-name keys are supported")
    expected_magic = MAGIC_RSA2 if btype == PRIVATEKEYBLOB else MAGIC_RSA1
    if magic != expected_magic:
        raise SnkFormatError(f"{what} has RSA magic {magic!r}, expected {expected_magic!r}")
    if bits == 0 or bits % 16:
        raise SnkFormatError(f"{what} declares an RSA key of {bits} bits; not a valid strong-name key")
    return btype, alg, magic, bits, exp


def _expected_len(btype: int, bits: int) -> int:
    if btype == PRIVATEKEYBLOB:
        return _HEADER.size + 2 * (bits // 8) + 5 * (bits // 16)
    return _HEADER.size + bits // 8


def private_key_from_snk(snk: bytes) -> rsa.RSAPrivateKey:
    """Load the RSA private key from ``.snk`` bytes (PRIVATEKEYBLOB).

    Raises:
        SnkFormatError: not a PRIVATEKEYBLOB, wrong length, or inconsistent key numbers.
    """
    btype, _alg, _magic, bits, e = _parse_header(snk, "the .snk")
    if btype != PRIVATEKEYBLOB:
        raise SnkFormatError("the file holds only a public key; a .snk key pair (PRIVATEKEYBLOB) is needed")
    if len(snk) != _expected_len(btype, bits):
        raise SnkFormatError(f"the .snk is {len(snk)} bytes, expected {_expected_len(btype, bits)} "
                             f"for a {bits}-bit key")
    off = _HEADER.size
    fields = []
    for size in (bits // 8, bits // 16, bits // 16, bits // 16, bits // 16, bits // 16, bits // 8):
        fields.append(int.from_bytes(snk[off:off + size], "little"))
        off += size
    n, p, q, dmp1, dmq1, iqmp, d = fields
    try:
        numbers = rsa.RSAPrivateNumbers(p, q, d, dmp1, dmq1, iqmp, rsa.RSAPublicNumbers(e, n))
        return numbers.private_key()
    except ValueError as err:
        raise SnkFormatError(f"the .snk key numbers are inconsistent ({err}); regenerate it") from None


def public_key_blob(data: bytes) -> bytes:
    """The strong-name public key blob for a key.

    Args:
        data: any of: ``.snk`` key pair (PRIVATEKEYBLOB); a bare CryptoAPI PUBLICKEYBLOB; or an
            already complete strong-name public key blob (what ``sn -p`` writes and what the
            ``Assembly.PublicKey`` metadata holds).
    Returns:
        ``SigAlgId(u32 LE) || HashAlgId(u32 LE, 0x8004 SHA-1) || cbPublicKey(u32 LE) || PUBLICKEYBLOB``
        where PUBLICKEYBLOB = ``PUBLICKEYSTRUC{0x06, 0x02, 0, aiKeyAlg}`` + ``RSAPUBKEY{"RSA1",
        bitlen, pubexp}`` + modulus (ECMA-335 §II.6.2.1.3; signing-spec §6.3).
    Raises:
        SnkFormatError: the bytes are none of those.
    """
    # A complete strong-name public key blob starts with SigAlgId/HashAlgId/cbPublicKey.
    if len(data) >= _SN_HEADER.size + _HEADER.size:
        sig_alg, hash_alg, cb = _SN_HEADER.unpack_from(data)
        full = cb == len(data) - _SN_HEADER.size and data[_SN_HEADER.size] == PUBLICKEYBLOB
        if sig_alg in (CALG_RSA_SIGN, CALG_RSA_KEYX) and full:
            btype, _alg, _magic, bits, _e = _parse_header(data[_SN_HEADER.size:], "the public key")
            if len(data) - _SN_HEADER.size != _expected_len(btype, bits):
                raise SnkFormatError("the strong-name public key blob has the wrong length for its key size")
            return bytes(data)
    btype, alg, _magic, bits, e = _parse_header(data, "the key file")
    if len(data) != _expected_len(btype, bits):
        raise SnkFormatError(
            f"the key file is {len(data)} bytes, expected {_expected_len(btype, bits)} for a {bits}-bit "
            f"{'key pair' if btype == PRIVATEKEYBLOB else 'public key'}"
        )
    modulus = data[_HEADER.size:_HEADER.size + bits // 8]
    pkb = _HEADER.pack(PUBLICKEYBLOB, CUR_BLOB_VERSION, 0, alg, MAGIC_RSA1, bits, e) + modulus
    return _SN_HEADER.pack(alg, CALG_SHA1, len(pkb)) + pkb


def public_key_token(blob: bytes) -> str:
    """Public key token of a strong-name public key blob: 16 lower-case hex characters.

    ``token = reverse(SHA-1(blob)[-8:])`` (ECMA-335 §II.6.2.1.3: "the low 8 bytes of the SHA-1
    hash of the originator's public key", stored little-endian). ``blob`` is the full blob as
    returned by :func:`public_key_blob` or read from ``Assembly.PublicKey`` (the 16-byte ECMA
    neutral key gives ``b77a5c561934e089``).
    """
    return hashlib.sha1(bytes(blob)).digest()[-8:][::-1].hex()


def token_of_key_file(data: bytes) -> str:
    """Public key token of ``.snk`` / ``sn -p`` public key bytes (see :func:`public_key_blob`)."""
    return public_key_token(public_key_blob(data))


def write_snk(path: Path | str, *, bits: int = 2048, force: bool = False) -> bytes:
    """Generate a key pair and write it to ``path`` (mode 0600, via a temp file and rename).

    Returns the ``.snk`` bytes.
    Raises:
        InputFileError: ``path`` exists and ``force`` is false, or the folder is not writable.
        ValueError: unsupported ``bits``.
    """
    path = Path(path)
    if path.exists() and not force:
        raise InputFileError(f"{path} already exists; keep it (changing the key changes the public key token) "
                             "or pass --force to replace it")
    data = generate_snk(bits)
    if not path.parent.exists():  # like `cert new --out`, create the folder (``snk new keys/X.snk``)
        try:
            path.parent.mkdir(parents=True)
        except OSError as e:
            raise InputFileError(f"cannot create folder {path.parent}: {e.strerror}; pick a writable path") from None
    atomic_write(path, data, mode=0o600)
    return data


