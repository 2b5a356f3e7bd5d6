"""Strong-name keys: ppmi-build's pure-Python .snk and token against Mono ``sn``/``mcs`` (signing-spec §6.3)."""

from __future__ import annotations

import json
import re
import stat
import struct

import pytest

from ppmi_build.assembly.metadata import read_assembly_identity
from ppmi_build.identity import snk as snkmod
from tests.conftest import compile_assembly, run_tool

TOKEN_LINE = re.compile(r"Public Key Token:\s*([0-9a-fA-F]{16})")


def sn_token_of_key(key_path, tmp_path) -> str:
    """Token computed by Mono: ``sn -p KEY PUB`` then ``sn -tp PUB``."""
    pub = tmp_path / f"{key_path.stem}.pub"
    res = run_tool("sn", "-q", "-p", key_path, pub)
    assert res.returncode == 0, res.stdout + res.stderr
    res = run_tool("sn", "-tp", pub)
    m = TOKEN_LINE.search(res.stdout)
    assert m, res.stdout
    return m.group(1).lower()


def sn_token_of_assembly(dll) -> str:
    res = run_tool("sn", "-T", dll)
    m = TOKEN_LINE.search(res.stdout)
    assert m, res.stdout + res.stderr
    return m.group(1).lower()


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A key written by ``ppmi-build snk new``: (path, printed token)."""
    from click.testing import CliRunner

    from ppmi_build.cli import main

    folder = tmp_path_factory.mktemp("snk")
    path = folder / "ppmi.snk"
    r = CliRunner().invoke(main, ["snk", "new", str(path), "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    return path, doc["public_key_token"]


@pytest.mark.interop
def test_sn_agrees_with_the_token_ppmi_prints(made, tmp_path, cli):
    path, printed = made
    assert re.fullmatch(r"[0-9a-f]{16}", printed)
    assert sn_token_of_key(path, tmp_path) == printed
    # `snk token` reads the key pair and the public key file sn -p wrote
    r = cli("snk", "token", path)
    assert r.exit_code == 0 and r.stdout.strip() == printed
    r = cli("snk", "token", tmp_path / f"{path.stem}.pub", "--json")
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert doc["public_key_token"] == printed and doc["source"] == "public key"


@pytest.mark.interop
def test_mcs_keyfile_gives_an_assembly_sn_verifies_and_ppmi_reads(made, tmp_path, cli):
    path, printed = made
    dll = compile_assembly(tmp_path / "Signed.With.Ppmi.dll", ns="Signed.With.Ppmi", version="2.3.4.5", keyfile=path)
    res = run_tool("sn", "-q", "-v", dll)
    assert res.returncode == 0, res.stdout + res.stderr
    assert sn_token_of_assembly(dll) == printed
    ident = read_assembly_identity(dll)
    assert ident.public_key_token == printed
    assert (ident.name, ident.version, ident.culture) == ("Signed.With.Ppmi", "2.3.4.5", "neutral")
    # the assembly's PublicKey blob is exactly the strong-name public key blob of the .snk
    assert ident.public_key == snkmod.public_key_blob(path.read_bytes())
    r = cli("snk", "token", dll, "--json")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["public_key_token"] == printed


@pytest.mark.interop
def test_ppmi_reads_mono_made_keys_and_assemblies(snk_file, strong_named_dll, tmp_path):
    """The other direction: keys from `sn -k` and assemblies signed with them."""
    expected = sn_token_of_key(snk_file, tmp_path)
    assert snkmod.token_of_key_file(snk_file.read_bytes()) == expected
    assert read_assembly_identity(strong_named_dll).public_key_token == sn_token_of_assembly(strong_named_dll)
    # and the private key parses into the same public numbers sn -p exported
    key = snkmod.private_key_from_snk(snk_file.read_bytes())
    pub = (tmp_path / f"{snk_file.stem}.pub").read_bytes()
    modulus = int.from_bytes(pub[12 + 20:], "little")
    assert key.public_key().public_numbers().n == modulus


def test_snk_layout_follows_privatekeyblob(made):
    """PUBLICKEYSTRUC + RSAPUBKEY + 2 x bitlen/8 + 5 x bitlen/16 (base-provider-key-blobs)."""
    path, _ = made
    data = path.read_bytes()
    btype, version, reserved, alg, magic, bits, exp = struct.unpack_from("<BBHI4sII", data)
    assert (btype, version, reserved, alg, magic, bits, exp) == (7, 2, 0, 0x2400, b"RSA2", 2048, 65537)
    assert len(data) == 20 + 2 * 256 + 5 * 128
    key = snkmod.private_key_from_snk(data)
    pn = key.private_numbers()
    assert pn.p * pn.q == pn.public_numbers.n
    assert int.from_bytes(data[20:20 + 256], "little") == pn.public_numbers.n
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_ecma_neutral_key_token():
    # ECMA-335 §II.6.2.1.3: the 16-byte "ECMA key" 00000000000000000400000000000000 has the
    # well-known token b77a5c561934e089 (mscorlib's PublicKeyToken).
    assert snkmod.public_key_token(bytes.fromhex("00000000000000000400000000000000")) == "b77a5c561934e089"


@pytest.mark.interop
def test_metadata_reader_on_mono_mscorlib():
    from pathlib import Path

    from tests.conftest import require_tool

    require_tool("mono")
    candidates = sorted(Path("/usr/lib/mono").glob("4.*/mscorlib.dll"))
    if not candidates:
        pytest.skip("Mono's mscorlib.dll not found under /usr/lib/mono")
    ident = read_assembly_identity(candidates[0])
    assert (ident.name, ident.culture, ident.public_key_token) == ("mscorlib", "neutral", "b77a5c561934e089")
    res = run_tool("ikdasm", "-assembly", candidates[0])
    m = re.search(r"^Version:\s*(\S+)", res.stdout, re.M)
    assert m and m.group(1) == ident.version


# --- bad input ----------------------------------------------------------------------------

def test_new_refuses_to_overwrite_without_force(made, cli, tmp_path):
    target = tmp_path / "k.snk"
    target.write_bytes(b"precious")
    r = cli("snk", "new", target)
    assert r.exit_code == 2
    assert "already exists" in r.stderr and "--force" in r.stderr
    assert target.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["k.snk"]
    r = cli("snk", "new", target, "--force", "--bits", "1024", "--json")
    assert r.exit_code == 0
    assert len(target.read_bytes()) == 20 + 2 * 128 + 5 * 64


def test_new_into_missing_folder_creates_it(cli, tmp_path):
    # like `cert new --out`, the documented `snk new keys/Contoso.snk` creates the folder
    r = cli("snk", "new", tmp_path / "keys" / "k.snk")
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "keys" / "k.snk").stat().st_mode & 0o777 == 0o600


def test_new_under_a_file_is_refused(cli, tmp_path):
    (tmp_path / "afile").write_text("x")
    r = cli("snk", "new", tmp_path / "afile" / "k.snk")
    assert r.exit_code == 2 and "afile" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.parametrize("content, needle", [
    (b"", "too short"),
    (b"not a key at all, just some text that is long enough", "not a strong-name key"),
    (struct.pack("<BBHI4sII", 7, 2, 0, 0x2400, b"RSA2", 2048, 65537) + b"\0" * 100, "expected"),
    (struct.pack("<BBHI4sII", 7, 2, 0, 0x2400, b"RSA1", 2048, 65537), "magic"),
])
def test_token_rejects_bad_key_files(cli, tmp_path, content, needle):
    f = tmp_path / "bad.snk"
    f.write_bytes(content)
    r = cli("snk", "token", f, "--json")
    assert r.exit_code == 2
    assert needle in r.stderr
    assert json.loads(r.stdout)["error"]["exit_code"] == 2
    assert f.read_bytes() == content


def test_token_of_unsigned_assembly_and_missing_file(cli, plain_dll, tmp_path):
    r = cli("snk", "token", plain_dll)
    assert r.exit_code == 2 and "not strong-named" in r.stderr
    r = cli("snk", "token", tmp_path / "missing.snk")
    assert r.exit_code == 2 and "does not exist" in r.stderr


def test_generate_rejects_odd_sizes():
    with pytest.raises(ValueError):
        snkmod.generate_snk(1000)
