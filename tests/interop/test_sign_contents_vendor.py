"""``sign --sign-contents`` and a third party's Authenticode signature on an assembly inside the package: an
intact vendor signature is kept byte for byte and named (stderr note, ``kept_vendor_signatures`` in ``--json``);
``--resign-third-party`` replaces it with ours; a vendor signature that does not verify is replaced as any other.
The vendor's DLL is signed by osslsigncode (independent of ppmi-build), and the results are checked with
``osslsigncode verify`` on the extracted entries."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from tests.conftest import run_tool
from tests.nupkg_builder import build_nupkg

pytestmark = pytest.mark.interop

VENDOR_ENTRY = "lib/net462/Fabrikam.Vendor.dll"
OUR_ENTRY = "lib/net462/Contoso.Plain.dll"


@pytest.fixture(scope="module")
def pwfile(tmp_path_factory, pfx_password) -> Path:
    p = tmp_path_factory.mktemp("vendorpw") / "pw.txt"
    p.write_text(pfx_password)
    return p


@pytest.fixture(scope="module")
def vendor_dll(tmp_path_factory, plain_dll, pki, pwfile) -> Path:
    """The plain assembly as a vendor ships it: Authenticode-signed by osslsigncode with another certificate
    (``leaf_no_ski``, "Contoso No SKI", issued by the test root)."""
    d = tmp_path_factory.mktemp("vendor")
    out = d / "Fabrikam.Vendor.dll"
    res = run_tool("osslsigncode", "sign", "-pkcs12", pki.leaf_no_ski.pfx, "-readpass", pwfile, "-h", "sha256",
                   "-in", plain_dll, "-out", out)
    assert res.returncode == 0, res.stdout + res.stderr
    return out


def _package(folder: Path, plain_dll: Path, vendor: Path) -> Path:
    return build_nupkg(folder / "Contoso.Plugins.1.0.0.nupkg", dlls=[plain_dll, vendor])


def _entry_sha256(pkg: Path, name: str) -> str:
    with zipfile.ZipFile(pkg) as z:
        return hashlib.sha256(z.read(name)).hexdigest()


def _ossl_verify(pkg: Path, name: str, pki, tmp_path: Path):
    dll = tmp_path / Path(name).name
    with zipfile.ZipFile(pkg) as z:
        dll.write_bytes(z.read(name))
    return run_tool("osslsigncode", "verify", "-in", dll, "-CAfile", pki.root.pem)


def _sign(cli, pki, pwfile, pkg, *extra):
    return cli("sign", pkg, "--sign-contents", *extra, "--cert", pki.leaf.pfx, "--password-file", pwfile, "--json")


def test_sign_contents_keeps_a_vendor_signature(cli, tmp_path, plain_dll, vendor_dll, pki, pwfile):
    pkg = _package(tmp_path, plain_dll, vendor_dll)
    vendor_before = hashlib.sha256(vendor_dll.read_bytes()).hexdigest()
    assert _entry_sha256(pkg, VENDOR_ENTRY) == vendor_before
    r = _sign(cli, pki, pwfile, pkg)
    assert r.exit_code == 0, r.stderr
    assert _entry_sha256(pkg, VENDOR_ENTRY) == vendor_before  # byte for byte
    (rec,) = json.loads(r.stdout)
    assert [k["entry"] for k in rec["kept_vendor_signatures"]] == [VENDOR_ENTRY]
    assert "Contoso No SKI" in rec["kept_vendor_signatures"][0]["signer"]
    assert f"kept the vendor's Authenticode signature on {VENDOR_ENTRY}" in r.stderr
    assert "--resign-third-party" in r.stderr
    kept = _ossl_verify(pkg, VENDOR_ENTRY, pki, tmp_path)
    assert "Signature verification: ok" in kept.stdout and "Contoso No SKI" in kept.stdout, kept.stdout
    ours = _ossl_verify(pkg, OUR_ENTRY, pki, tmp_path)  # the unsigned one is signed with our certificate
    assert "Signature verification: ok" in ours.stdout and "Contoso Plug-in Signing" in ours.stdout, ours.stdout
    v = cli("verify", pkg, "--trusted-root", pki.root.pem)
    assert v.exit_code == 0, v.stdout + v.stderr


def test_resign_third_party_replaces_the_vendor_signature(cli, tmp_path, plain_dll, vendor_dll, pki, pwfile):
    pkg = _package(tmp_path, plain_dll, vendor_dll)
    r = _sign(cli, pki, pwfile, pkg, "--resign-third-party")
    assert r.exit_code == 0, r.stderr
    (rec,) = json.loads(r.stdout)
    assert rec["kept_vendor_signatures"] == [] and "kept the vendor" not in r.stderr
    res = _ossl_verify(pkg, VENDOR_ENTRY, pki, tmp_path)
    assert "Signature verification: ok" in res.stdout, res.stdout + res.stderr
    assert "Contoso Plug-in Signing" in res.stdout and "Contoso No SKI" not in res.stdout, res.stdout


def test_a_vendor_signature_that_does_not_verify_is_replaced(cli, tmp_path, plain_dll, vendor_dll, pki, pwfile):
    broken = tmp_path / "src" / vendor_dll.name
    broken.parent.mkdir()
    shutil.copyfile(vendor_dll, broken)
    data = bytearray(broken.read_bytes())
    at = len(plain_dll.read_bytes()) // 2  # inside the image, before the certificate table
    data[at] ^= 0xFF
    broken.write_bytes(bytes(data))
    bad = run_tool("osslsigncode", "verify", "-in", broken, "-CAfile", pki.root.pem)
    assert "Signature verification: ok" not in bad.stdout  # the vendor signature no longer matches
    pkg = _package(tmp_path, plain_dll, broken)
    r = _sign(cli, pki, pwfile, pkg)
    assert r.exit_code == 0, r.stderr
    (rec,) = json.loads(r.stdout)
    assert rec["kept_vendor_signatures"] == []
    res = _ossl_verify(pkg, VENDOR_ENTRY, pki, tmp_path)
    assert "Signature verification: ok" in res.stdout and "Contoso Plug-in Signing" in res.stdout, res.stdout


def test_resign_third_party_needs_sign_contents(cli, tmp_path, plain_dll, vendor_dll, pki, pwfile):
    pkg = _package(tmp_path, plain_dll, vendor_dll)
    before = pkg.read_bytes()
    r = cli("sign", pkg, "--resign-third-party", "--cert", pki.leaf.pfx, "--password-file", pwfile)
    assert r.exit_code == 2 and "add --sign-contents" in r.stderr, r.stderr
    assert pkg.read_bytes() == before
