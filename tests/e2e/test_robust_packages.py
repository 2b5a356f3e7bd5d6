"""Hostile package inputs (adversarial report #4, the .nupkg parts of #3 and #17).

* #4: encrypted entries, duplicate entry paths, CRC-damaged entries and zip bombs given to ``sign``,
  ``sign --sign-contents``, ``register`` (:func:`ppmi_build.assembly.package.read_package`) and the
  emulator: refused with one line naming ``package!entry``, exit 2, JSON on stdout with ``--json``, the input
  byte-identical and no temporary file left behind; nothing inflated beyond the limits (memory measured with
  ``tracemalloc``).
* #3: ``verify_package`` never raises on a damaged ``.signature.p7s`` or certificate: a fixed-seed fuzz of
  single-byte changes in the signature and anywhere in the package; a changed byte never leaves a valid
  signature unless it lies where NuGet's format authenticates nothing (checked per region below).
* #17: ``unsign`` of a read-only package is refused like ``sign`` refuses it.

The hostile packages are written here with Python's ``zipfile`` and patched with ``struct`` at offsets taken from
PKWARE APPNOTE.TXT §4.3 (local header: flags at +6, CRC at +14, sizes at +18/+22; central header: flags at +8,
CRC at +16, sizes at +20/+24), independent of ppmi-build's zip code. Where the real tool exists, ``zip -P``
(Info-ZIP) makes the encrypted package.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import stat
import struct
import subprocess
import sys
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import pytest
from asn1crypto import cms as acms

from ppmi_build.assembly.package import read_package
from ppmi_build.errors import PackageFormatError
from ppmi_build.signing.nuget import sign as nuget_sign
from ppmi_build.signing.nuget import verify as nuget_verify
from tests.emulator_fixture import emulator, emulator_env  # noqa: F401
from tests.interop.test_nuget import local_header, zip_records

NUSPEC = (b'<?xml version="1.0" encoding="utf-8"?><package xmlns="http://schemas.microsoft.com/packaging/2013/05/'
          b'nuspec.xsd"><metadata><id>Contoso.Plugins</id><version>1.0.0</version><authors>C</authors>'
          b'<description>d</description></metadata></package>')
DLL_ENTRY = "lib/net462/Contoso.Plain.dll"
MiB = 1024 * 1024


# --- packages -------------------------------------------------------------------------------------------------


def write_package(out: Path, entries: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names some tests want
        with zipfile.ZipFile(out, "w", method) as z:
            z.writestr("Contoso.Plugins.nuspec", NUSPEC)
            for name, data in entries:
                z.writestr(name, data)
    return out


def patch_entry(data: bytes, name: str, *, flags_or: int = 0, sizes: int | None = None) -> bytes:
    """Set bits in the general purpose flags, or the uncompressed size, of entry ``name`` in both its local and
    central headers (APPNOTE §4.3.7, §4.3.12)."""
    out = bytearray(data)
    recs, _ = zip_records(data)
    (rec,) = [r for r in recs if r["name"] == name.encode()]
    for flag_at, usize_at in ((rec["pos"] + 8, rec["pos"] + 24), (rec["lho"] + 6, rec["lho"] + 22)):
        struct.pack_into("<H", out, flag_at, struct.unpack_from("<H", out, flag_at)[0] | flags_or)
        if sizes is not None:
            struct.pack_into("<I", out, usize_at, sizes)
    return bytes(out)


def zeros_entry(out: Path, name: str, size: int) -> Path:
    """A package whose entry ``name`` is ``size`` zero bytes, deflated (about 1000:1)."""
    return write_package(out, [(name, bytes(size))])


@pytest.fixture(scope="session")
def dll_bytes(plain_dll) -> bytes:
    return plain_dll.read_bytes()


@pytest.fixture(scope="session")
def pwfile(tmp_path_factory, pfx_password) -> Path:
    p = tmp_path_factory.mktemp("robust-pw") / "pw.txt"
    p.write_text(pfx_password)
    return p


def only_files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def refused(r, *, exit_code: int = 2) -> str:
    """The one-line JSON error of a refused ``--json`` run (no traceback anywhere)."""
    assert r.exit_code == exit_code, (r.exit_code, r.stdout, r.stderr)
    assert "Traceback" not in r.stdout + r.stderr
    doc = json.loads(r.stdout)
    message = doc["error"]["message"]
    assert "\n" not in message and doc["error"]["exit_code"] == exit_code
    return message


def sign_refused(cli, pki, pwfile, pkg: Path, *extra: str) -> str:
    before, names = pkg.read_bytes(), only_files(pkg.parent)
    r = cli("sign", pkg, "--cert", pki.leaf.pfx, "--password-file", pwfile, *extra, "--json")
    message = refused(r)
    assert pkg.read_bytes() == before, "a refused run changed the input"
    assert only_files(pkg.parent) == names, "a refused run left a file behind"
    return message


# --- #4: encrypted entries, duplicates ------------------------------------------------------------------------


@pytest.mark.parametrize("contents", [False, True], ids=["sign", "sign-contents"])
def test_encrypted_entry_is_refused(cli, pki, pwfile, dll_bytes, tmp_path, contents):
    pkg = tmp_path / "enc.nupkg"
    plain = write_package(tmp_path / "plain.nupkg", [(DLL_ENTRY, dll_bytes)]).read_bytes()
    pkg.write_bytes(patch_entry(plain, DLL_ENTRY, flags_or=0x1))
    (tmp_path / "plain.nupkg").unlink()
    message = sign_refused(cli, pki, pwfile, pkg, *(["--sign-contents"] if contents else []))
    assert f"enc.nupkg!{DLL_ENTRY} is encrypted" in message
    with pytest.raises(PackageFormatError, match=f"enc.nupkg!{DLL_ENTRY} is encrypted"):
        read_package(pkg.read_bytes(), label="enc.nupkg")


@pytest.mark.interop
def test_package_encrypted_by_info_zip_is_refused(cli, pki, pwfile, dll_bytes, tmp_path):
    """The report's repro: ``zip -P x e.nupkg …`` (ZipCrypto, Info-ZIP)."""
    from tests.conftest import require_tool

    require_tool("zip")
    src = tmp_path / "src"
    (src / "lib" / "net462").mkdir(parents=True)
    (src / "Contoso.Plugins.nuspec").write_bytes(NUSPEC)
    (src / DLL_ENTRY).write_bytes(dll_bytes)
    work = tmp_path / "work"
    work.mkdir()
    subprocess.run(["zip", "-q", "-P", "x", "-r", str(work / "e.nupkg"), "."], cwd=src, check=True)
    assert "is encrypted" in sign_refused(cli, pki, pwfile, work / "e.nupkg")


@pytest.mark.parametrize("second", [DLL_ENTRY, DLL_ENTRY.upper(), "./" + DLL_ENTRY.replace("/", "\\")],
                         ids=["same", "case", "backslash"])
def test_duplicate_entry_paths_are_nu5050(cli, pki, pwfile, dll_bytes, tmp_path, second):
    """NuGet cannot extract two files to one path (NU5050); nuget.org compares paths ignoring case, with ``\\``
    as ``/`` and a leading ``./`` dropped (NuGetGallery PackageValidationHelper)."""
    pkg = write_package(tmp_path / "dup.nupkg", [(DLL_ENTRY, dll_bytes), (second, b"other bytes")])
    with zipfile.ZipFile(pkg) as z:  # zipfile keeps both records
        assert len(z.infolist()) == 3
    for extra in ([], ["--sign-contents"]):
        message = sign_refused(cli, pki, pwfile, pkg, *extra)
        assert message.startswith("NU5050: ") and "dup.nupkg" in message and second in message
    with pytest.raises(PackageFormatError) as e:
        read_package(pkg.read_bytes(), label="dup.nupkg")
    assert e.value.code == "NU5050"


# --- #4: damaged entries ------------------------------------------------------------------------------------------


def crc_damaged(tmp_path: Path, dll_bytes: bytes, method: int) -> Path:
    pkg = write_package(tmp_path / "crc.nupkg", [(DLL_ENTRY, dll_bytes)], method)
    data = bytearray(pkg.read_bytes())
    recs, _ = zip_records(bytes(data))
    (rec,) = [r for r in recs if r["name"] == DLL_ENTRY.encode()]
    lh = local_header(bytes(data), rec["lho"])
    data[lh["data_off"] + lh["csize"] // 2] ^= 0x01  # one bit in the entry's data; headers untouched
    pkg.write_bytes(bytes(data))
    return pkg


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"])
def test_damaged_entry_names_package_and_entry(cli, pki, pwfile, dll_bytes, tmp_path, method):
    pkg = crc_damaged(tmp_path, dll_bytes, method)
    with zipfile.ZipFile(pkg) as z:  # the independent reader agrees it is damaged
        assert z.testzip() == DLL_ENTRY
    message = sign_refused(cli, pki, pwfile, pkg, "--sign-contents")
    assert message.startswith(f"crc.nupkg!{DLL_ENTRY} cannot be read"), message
    with pytest.raises(PackageFormatError, match=f"^crc.nupkg!{DLL_ENTRY} cannot be read"):
        read_package(pkg.read_bytes(), label="crc.nupkg")


def test_plain_sign_still_signs_what_nuget_signs(cli, pki, pwfile, dll_bytes, tmp_path):
    """Without --sign-contents the entries are not inflated (NuGet's signer hashes the bytes as they are), so a
    package whose entry data is damaged is signed like nuget sign would; verify then still checks the hash."""
    pkg = crc_damaged(tmp_path, dll_bytes, zipfile.ZIP_STORED)
    r = cli("sign", pkg, "--cert", pki.leaf.pfx, "--password-file", pwfile, "--json")
    assert r.exit_code == 0, r.stdout + r.stderr


def test_inner_signing_errors_name_the_entry_not_the_temp_file(cli, pki, pwfile, tmp_path):
    pkg = write_package(tmp_path / "np.nupkg", [("lib/net462/x.dll", b"not a PE file at all" * 20)])
    message = sign_refused(cli, pki, pwfile, pkg, "--sign-contents")
    assert message.startswith("np.nupkg!lib/net462/x.dll ") and "not a PE file" in message, message
    assert "ppmi-entry" not in message and str(tmp_path) not in message.replace(str(pkg), "")


# --- #4: zip bombs ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def bombs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bombs")
    honest = zeros_entry(d / "honest.nupkg", "lib/net462/x.dll", 64 * MiB)  # declared 64 MiB: over 16 MB
    ratio = zeros_entry(d / "ratio.nupkg", "lib/net462/x.dll", 15 * MiB)  # under 16 MB, but 1000:1
    content = zeros_entry(d / "content.nupkg", "content/blob.bin", 40 * MiB)  # a content file, 1000:1
    lying = d / "lying.nupkg"  # declares 4 KiB, inflates to 64 MiB
    lying.write_bytes(patch_entry(honest.read_bytes(), "lib/net462/x.dll", sizes=4096))
    return {"honest": honest, "ratio": ratio, "content": content, "lying": lying}


@pytest.mark.parametrize("case,expect", [
    ("honest", "over the 16 MiB limit (Dataverse's plug-in assembly size limit is 16 MB)"),
    ("ratio", "inflates to more than 100 times its compressed size"),
    ("lying", "cannot be read (BadZipFile: Bad CRC-32"),
])
def test_zip_bomb_assembly_is_refused_without_inflating_it(bombs, case, expect):
    data = bombs[case].read_bytes()
    assert len(data) < 200 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(PackageFormatError) as e:
            read_package(data, label=f"{case}.nupkg")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert e.value.message.startswith(f"{case}.nupkg!lib/net462/x.dll "), e.value.message
    assert expect in e.value.message
    assert peak < 8 * MiB, f"inflated {peak} bytes to refuse it"


@pytest.mark.parametrize("case", ["honest", "content", "lying"])
def test_zip_bomb_is_refused_by_sign_contents(cli, pki, pwfile, bombs, copy_of, case):
    pkg = copy_of(bombs[case])
    message = sign_refused(cli, pki, pwfile, pkg, "--sign-contents")
    assert message.startswith(f"{case}.nupkg!"), message


def test_big_but_honest_content_entry_is_streamed(cli, pki, pwfile, tmp_path, dll_bytes):
    """A 6 MiB incompressible content file goes through --sign-contents (streamed, not refused)."""
    blob = random.Random(7).randbytes(6 * MiB)
    pkg = write_package(tmp_path / "big.nupkg", [(DLL_ENTRY, dll_bytes), ("content/blob.bin", blob)])
    r = cli("sign", pkg, "--cert", pki.leaf.pfx, "--password-file", pwfile, "--sign-contents", "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    with zipfile.ZipFile(pkg) as z:
        assert z.testzip() is None and z.read("content/blob.bin") == blob


# --- #4 through register and the emulator ------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path, monkeypatch, emulator_env):  # noqa: F811
    (tmp_path / "ppmi.toml").write_text(
        "[plugin]\nkind = \"package\"\n\n[identity]\ntenant_id = \"7f2c1900-9fd4-4b89-91d3-79a649996f0a\"\n"
        "application_id = \"9f3d07ca-381e-43fc-8bef-76dd03b460d6\"\nversion = 2\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("case", ["encrypted", "duplicate", "crc", "bomb"])
def test_register_refuses_hostile_packages(cli, project, emulator, dll_bytes, bombs, case):  # noqa: F811
    if case == "encrypted":
        plain = write_package(project / "p.nupkg", [(DLL_ENTRY, dll_bytes)]).read_bytes()
        (project / "p.nupkg").write_bytes(patch_entry(plain, DLL_ENTRY, flags_or=0x1))
    elif case == "duplicate":
        write_package(project / "p.nupkg", [(DLL_ENTRY, dll_bytes), (DLL_ENTRY, dll_bytes)])
    elif case == "crc":
        crc_damaged(project, dll_bytes, zipfile.ZIP_DEFLATED).rename(project / "p.nupkg")
    else:
        shutil.copyfile(bombs["honest"], project / "p.nupkg")
    pkg = project / "p.nupkg"
    before = pkg.read_bytes()
    r = cli("register", "--env", "emu", "--kind", "package", pkg, "--json")
    message = refused(r)
    assert message.startswith(("p.nupkg!", "NU5050: p.nupkg")), message
    assert {"encrypted": "is encrypted", "duplicate": "more than one entry", "crc": "cannot be read",
            "bomb": "over the 16 MiB limit"}[case] in message
    assert pkg.read_bytes() == before
    assert [q for q in emulator.requests() if q["method"] != "GET"] == []  # refused before any upload


def test_emulator_answers_400_for_hostile_upload(bombs, dll_bytes, tmp_path):
    from ppmi_build.emulator.dataverse.artifacts import ApiError
    from ppmi_build.emulator.dataverse.artifacts import read_nupkg as _read_nupkg

    plain = write_package(tmp_path / "p.nupkg", [(DLL_ENTRY, dll_bytes)]).read_bytes()
    for data in (patch_entry(plain, DLL_ENTRY, flags_or=0x1), bombs["lying"].read_bytes()):
        with pytest.raises(ApiError) as e:
            _read_nupkg(data)
        assert "content!lib/net462/" in str(e.value.args) + str(getattr(e.value, "message", ""))


# --- #3 (.nupkg): a damaged signature never crashes verify -------------------------------------------------------


@pytest.fixture(scope="session")
def signed_pkg(tmp_path_factory, dll_bytes, pki, pwfile, tsa) -> Path:
    from ppmi_build.signing.keys import PasswordSource, load_key_source

    d = tmp_path_factory.mktemp("robust-signed")
    src = write_package(d / "src.nupkg", [(DLL_ENTRY, dll_bytes)])
    out = d / "Contoso.Plugins.1.0.0.nupkg"
    key = load_key_source(pki.leaf.pfx, PasswordSource(file=pwfile))
    nuget_sign.sign_package(src, out, key, timestamp_urls=[tsa.url])
    return out


def _copies(data: bytes, der: bytes) -> list[tuple[int, int]]:
    found, start = [], 0
    while (at := data.find(der, start)) >= 0:
        found.append((at, at + len(der)))
        start = at + 1
    return found


def _regions(data: bytes, pki) -> dict[str, list[tuple[int, int]]]:
    """Byte ranges of the signed package, from APPNOTE §4.3 and the DER of the signature."""
    recs, eocd = zip_records(data)
    sig = recs[-1]
    assert sig["name"] == b".signature.p7s"
    lh = local_header(data, sig["lho"])
    p7s = data[lh["data_off"]:lh["data_off"] + lh["csize"]]
    si = acms.ContentInfo.load(p7s)["content"]["signer_infos"][0]
    unsigned = si["unsigned_attrs"].dump()
    spare = _copies(data, pki.root.der)  # the trust anchor comes from --trusted-root, not from the file
    for cert in (pki.leaf, pki.intermediate, pki.tsa):
        copies = _copies(data, cert.der)
        if len(copies) > 1:  # OpenSSL's TSA puts its certificate in twice: either copy alone will do
            spare += copies
    return {
        "p7s": [(lh["data_off"], lh["data_off"] + lh["csize"])],
        # unsigned attributes (RFC 5652 §5.3): a change there may drop the timestamp, never forge one
        "unsigned": [(data.index(unsigned), data.index(unsigned) + len(unsigned))],
        # bytes nothing authenticates, by design: spare certificate copies, and signature entry header fields
        # NuGet does not check (AssertSignatureEntryMetadata): local header version/time/date/CRC; central
        # header versions/time/date/CRC/disk number/internal attributes
        "unauthenticated": [*spare,
                            (sig["lho"] + 4, sig["lho"] + 6), (sig["lho"] + 10, sig["lho"] + 18),
                            (sig["pos"] + 4, sig["pos"] + 8), (sig["pos"] + 12, sig["pos"] + 20),
                            (sig["pos"] + 34, sig["pos"] + 38)],
        "eocd_magic": [(eocd["pos"], eocd["pos"] + 4)],
    }


def _inside(i: int, ranges) -> bool:
    return any(a <= i < b for a, b in ranges)


def test_leaf_key_algorithm_damaged_is_invalid_not_a_crash(signed_pkg, pki, tmp_path, cli):
    """The report's repro: one byte of the rsaEncryption OID after the leaf certificate -> UnsupportedAlgorithm."""
    data = bytearray(signed_pkg.read_bytes())
    j = data.find(bytes.fromhex("06092a864886f70d010101"), data.find(pki.leaf.der[:64]))
    data[j + 10] = 0x63
    bad = tmp_path / "t.nupkg"
    bad.write_bytes(bytes(data))
    res = nuget_verify.verify_package(bad, trusted_roots=[pki.root.cert])
    assert not res.valid and res.signed and res.problems
    r = cli("verify", bad, "--trusted-root", pki.root.pem, "--json")
    assert r.exit_code == 1, r.stdout + r.stderr
    (doc,) = json.loads(r.stdout)
    assert doc["valid"] is False and doc["problems"]


@pytest.mark.filterwarnings("ignore:Parsed a serial number")  # a damaged certificate's serial (cryptography notice)
def test_fuzz_single_byte_changes_never_crash_verify(signed_pkg, pki, tmp_path):
    data = signed_pkg.read_bytes()
    assert nuget_verify.verify_package(signed_pkg, trusted_roots=[pki.root.cert], use_system_roots=False).valid
    regions = _regions(data, pki)
    rnd = random.Random(20260101)
    (p7s_start, p7s_end), = regions["p7s"]
    positions = [rnd.randrange(p7s_start, p7s_end) for _ in range(150)] + [rnd.randrange(len(data)) for _ in range(50)]
    bad_path = tmp_path / "fuzz.nupkg"
    outcomes = {"invalid": 0, "unauthenticated": 0, "not a zip": 0}
    for i in positions:
        bad = bytearray(data)
        bad[i] = (bad[i] + rnd.randrange(1, 256)) % 256
        bad_path.write_bytes(bytes(bad))
        try:
            res = nuget_verify.verify_package(bad_path, trusted_roots=[pki.root.cert], use_system_roots=False)
        except PackageFormatError as e:  # only when the end record's signature itself is gone
            assert _inside(i, regions["eocd_magic"]) and "not a zip archive" in e.message, (i, e.message)
            outcomes["not a zip"] += 1
            continue
        assert all(isinstance(p, str) and p[:2] == "NU" and "\n" not in p for p in res.problems), res.problems
        if res.valid:
            lost_timestamp = _inside(i, regions["unsigned"]) and res.timestamp is None
            assert _inside(i, regions["unauthenticated"]) or lost_timestamp, \
                f"byte {i} changed and the package still verifies"
            outcomes["unauthenticated"] += 1
        else:
            assert res.problems, i
            outcomes["invalid"] += 1
    assert outcomes["invalid"] >= 120, outcomes


def test_damaged_zip_structure_is_an_invalid_result(signed_pkg, pki, tmp_path):
    """Report #6 for packages: bytes put in front of a signed package -> INVALID (NU3008), not an exception."""
    bad = tmp_path / "prefixed.nupkg"
    bad.write_bytes(b"\0" * 64 + signed_pkg.read_bytes())
    res = nuget_verify.verify_package(bad, trusted_roots=[pki.root.cert])
    assert not res.valid and res.signed
    assert any(p.startswith("NU3008") for p in res.problems), res.problems


def test_not_a_zip_is_still_bad_input(tmp_path):
    p = tmp_path / "x.nupkg"
    p.write_bytes(b"plain text, not a package" * 8)
    with pytest.raises(PackageFormatError, match="is not a zip archive"):
        nuget_verify.verify_package(p)


# --- #17: unsign of a read-only package ------------------------------------------------------------------------


def test_unsign_read_only_package_is_refused_like_sign(cli, signed_pkg, copy_of, pki, pwfile):
    pkg = copy_of(signed_pkg)
    os.chmod(pkg, stat.S_IRUSR | stat.S_IRGRP)
    try:
        before, names = pkg.read_bytes(), only_files(pkg.parent)
        message = refused(cli("unsign", pkg, "--json"))
        sign_message = refused(cli("sign", pkg, "--cert", pki.leaf.pfx, "--password-file", pwfile, "--overwrite",
                                   "--json"))
        assert message == sign_message == (f"{pkg} is read-only; make it writable (chmod u+w {pkg.name}) or write "
                                           "elsewhere with -o OUT")
        assert pkg.read_bytes() == before and only_files(pkg.parent) == names
        # -o elsewhere still works, and gives back the unsigned package
        out = pkg.parent / "unsigned.nupkg"
        r = cli("unsign", pkg, "-o", out, "--json")
        assert r.exit_code == 0, r.stdout + r.stderr
        assert json.loads(r.stdout)["sha256_after"] == hashlib.sha256(out.read_bytes()).hexdigest()
        with zipfile.ZipFile(out) as z:
            assert ".signature.p7s" not in z.namelist()
    finally:
        os.chmod(pkg, stat.S_IRUSR | stat.S_IWUSR)


def test_cli_subprocess_prints_one_line_for_a_hostile_package(tmp_path, pki, pwfile, bombs):
    """Outside the in-process runner: ``sign --sign-contents`` on the lying zip bomb prints exactly one
    ``error:`` line on stderr, exit 2, nothing left behind."""
    pkg = tmp_path / "lying.nupkg"
    shutil.copyfile(bombs["lying"], pkg)
    r = subprocess.run([sys.executable, "-m", "ppmi_build", "sign", str(pkg), "--cert", str(pki.leaf.pfx),
                        "--password-file", str(pwfile), "--sign-contents"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: lying.nupkg!lib/net462/x.dll cannot be read"), r.stderr
    assert only_files(tmp_path) == {"lying.nupkg"} and pkg.read_bytes() == bombs["lying"].read_bytes()
