"""``ppmi-build sign/verify/unsign/fic`` on plug-in packages: exit codes, messages, JSON, atomic
writes (a refused or failed run leaves the package byte-identical and no temporary file behind), and the
``nuget``/``dotnet`` back-ends.

Independent checks: ``openssl cms -verify`` of the signature written through the CLI, ``osslsigncode
verify`` of the assemblies signed inside the package (``--sign-contents``), ``unzip -t``, ``zipfile``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import run_tool
from tests.nupkg_builder import build_many_entries, build_nupkg

pytestmark = pytest.mark.interop

SPEC_CONTENT = "Version:1\n\n2.16.840.1.101.3.4.2.1-Hash:{b64}\n\n"  # NuGet package signature specification


@pytest.fixture(scope="session")
def cli_pkg(tmp_path_factory, plain_dll) -> Path:
    return build_nupkg(tmp_path_factory.mktemp("clipkg") / "Contoso.Plugins.1.0.0.nupkg", dlls=[plain_dll])


@pytest.fixture
def pkg(cli_pkg, copy_of) -> Path:
    return copy_of(cli_pkg)


@pytest.fixture(scope="session")
def pwfile(tmp_path_factory, pfx_password) -> Path:
    p = tmp_path_factory.mktemp("clipw") / "pw.txt"
    p.write_text(pfx_password)
    return p


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def sign_args(pki, pwfile, *extra, cert="leaf"):
    return ("sign", *extra, "--cert", getattr(pki, cert).pfx, "--password-file", pwfile, "--json")


def test_sign_verify_unsign_round_trip(cli, pkg, cli_pkg, pki, pwfile, tsa, tmp_path):
    original = pkg.read_bytes()
    r = cli(*sign_args(pki, pwfile, pkg, "--timestamp-url", tsa.url))
    assert r.exit_code == 0, r.stderr
    (rec,) = json.loads(r.stdout)
    assert rec["kind"] == "package" and rec["timestamped"] and rec["verified"]
    assert rec["sha256_before"] == hashlib.sha256(original).hexdigest()
    assert rec["sha256_after"] == hashlib.sha256(pkg.read_bytes()).hexdigest()
    assert rec["signer"]["sha256"] == hashlib.sha256(pki.leaf.der).hexdigest()
    assert sorted(p.name for p in pkg.parent.iterdir() if p.name.startswith(".")) == []

    # openssl: the signature and its attached content
    p7s = tmp_path / "sig.p7s"
    with zipfile.ZipFile(pkg) as z:
        p7s.write_bytes(z.read(".signature.p7s"))
    out = tmp_path / "content.txt"
    res = run_tool("openssl", "cms", "-verify", "-inform", "DER", "-in", p7s, "-CAfile", pki.root.pem,
                   "-purpose", "any", "-out", out)
    assert res.returncode == 0, res.stderr
    assert out.read_text() == SPEC_CONTENT.format(b64=base64.b64encode(hashlib.sha256(original).digest()).decode())
    assert "No errors detected" in run_tool("unzip", "-t", pkg).stdout

    r = cli("verify", pkg, "--trusted-root", pki.root.pem, "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    (v,) = json.loads(r.stdout)
    assert v["valid"] and v["signed"] and v["problems"] == [] and v["timestamp"]

    r = cli("verify", pkg, "--json")  # the test root is not a Microsoft root
    assert r.exit_code == 1
    (v,) = json.loads(r.stdout)
    assert any(p.startswith("NU3018") for p in v["problems"])

    unsigned = tmp_path / "unsigned.nupkg"
    r = cli("unsign", pkg, "-o", unsigned, "--json")
    assert r.exit_code == 0, r.stderr
    assert unsigned.read_bytes() == original
    assert json.loads(r.stdout)["removed"] is True
    r = cli("unsign", pkg)  # in place
    assert r.exit_code == 0 and pkg.read_bytes() == original


def test_fic_takes_the_package_signer(cli, pkg, pki, pwfile):
    assert cli(*sign_args(pki, pwfile, pkg, cert="self_signed")).exit_code == 0
    r = cli("fic", "--artifact", pkg, "--tenant-id", "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "--environment-id", "c2d4d3f2-5a2d-4c6b-9d0b-1a2b3c4d5e6f", "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["certificate"]["sha256"] == hashlib.sha256(pki.self_signed.der).hexdigest()
    # v2 subject for a self-signed certificate: h/ + SHA-256 of the certificate (domain-spec §1)
    assert doc["subject"].endswith(hashlib.sha256(pki.self_signed.der).hexdigest())


def test_one_byte_change_makes_verify_exit_1_with_nu3008(cli, pkg, pki, pwfile):
    assert cli(*sign_args(pki, pwfile, pkg)).exit_code == 0
    data = bytearray(pkg.read_bytes())
    data[100] ^= 0x20
    pkg.write_bytes(data)
    r = cli("verify", pkg, "--trusted-root", pki.root.pem, "--json")
    assert r.exit_code == 1
    (v,) = json.loads(r.stdout)
    assert not v["valid"] and any(p.startswith("NU3008") for p in v["problems"])
    r = cli("verify", pkg, "--trusted-root", pki.root.pem)
    assert r.exit_code == 1 and "NU3008" in r.stdout


def test_resign_needs_overwrite(cli, pkg, cli_pkg, pki, pwfile):
    assert cli(*sign_args(pki, pwfile, pkg)).exit_code == 0
    signed = pkg.read_bytes()
    r = cli(*sign_args(pki, pwfile, pkg, cert="leaf_no_ski"))
    assert r.exit_code == 2
    assert "NU3001" in r.stderr and "--overwrite" in r.stderr
    assert json.loads(r.stdout)["error"]["code"] == "NU3001"
    assert pkg.read_bytes() == signed
    assert snapshot(pkg.parent).keys() == {pkg.name}
    r = cli(*sign_args(pki, pwfile, pkg, "--overwrite", cert="leaf_no_ski"))
    assert r.exit_code == 0, r.stderr
    (rec,) = json.loads(r.stdout)
    assert rec["replaced_signature"] is True
    assert rec["signer"]["sha256"] == hashlib.sha256(pki.leaf_no_ski.der).hexdigest()
    r = cli("unsign", pkg, "--json")
    assert r.exit_code == 0 and pkg.read_bytes() == cli_pkg.read_bytes()


@pytest.mark.parametrize("cert,code", [
    ("weak", "NU3014"), ("no_codesigning", "NU3018"), ("lifetime", "NU3015"), ("not_yet_valid", "NU3017"),
])
def test_certificate_refusals(cli, pkg, pki, pwfile, cert, code):
    before = snapshot(pkg.parent)
    r = cli(*sign_args(pki, pwfile, pkg, cert=cert))
    assert r.exit_code == 2, r.stdout + r.stderr
    assert r.stderr.startswith(f"error: {code}:"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert json.loads(r.stdout)["error"]["code"] == code
    assert snapshot(pkg.parent) == before


def test_zip64_refusal(cli, tmp_path, pki, pwfile):
    p = build_nupkg(tmp_path / "z64.nupkg", zip64=True)
    before = snapshot(tmp_path)
    r = cli(*sign_args(pki, pwfile, p))
    assert r.exit_code == 2 and r.stderr.startswith("error: NU3006:"), r.stderr
    assert "Zip64" in r.stderr
    assert snapshot(tmp_path) == before


def test_too_many_entries_refusal(cli, tmp_path, pki, pwfile):
    p = build_many_entries(tmp_path / "big.nupkg", 0xFFFE)
    before = snapshot(tmp_path)
    r = cli(*sign_args(pki, pwfile, p))
    assert r.exit_code == 2 and r.stderr.startswith("error: NU3039:"), r.stderr
    assert snapshot(tmp_path) == before


def test_failed_timestamp_leaves_package_untouched(cli, pkg, pki, pwfile, tsa):
    before = snapshot(pkg.parent)
    r = cli(*sign_args(pki, pwfile, pkg, "--timestamp-url", tsa.url + "fail"))
    assert r.exit_code == 3, r.stderr
    assert "timestamp" in r.stderr.lower()
    assert snapshot(pkg.parent) == before


def test_fallback_timestamp_url(cli, pkg, pki, pwfile, tsa):
    r = cli(*sign_args(pki, pwfile, pkg, "--timestamp-url", tsa.url + "garbage", "--timestamp-url", tsa.url))
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)[0]["timestamped"]


def test_not_a_package(cli, tmp_path, pki, pwfile):
    p = tmp_path / "broken.nupkg"
    p.write_bytes(b"PK\x03\x04 truncated")
    r = cli(*sign_args(pki, pwfile, p))
    assert r.exit_code == 2 and "not a zip" in r.stderr
    assert p.read_bytes() == b"PK\x03\x04 truncated"
    r = cli("verify", p)
    assert r.exit_code == 2
    r = cli("unsign", p)
    assert r.exit_code == 2 and p.read_bytes() == b"PK\x03\x04 truncated"


def test_unsign_refusals_keep_the_file(cli, pkg, tmp_path):
    before = snapshot(pkg.parent)
    r = cli("unsign", pkg, "--json")
    assert r.exit_code == 2 and "NU3004" in r.stderr
    assert snapshot(pkg.parent) == before
    r = cli("unsign", tmp_path / "missing.nupkg")
    assert r.exit_code == 2 and "does not exist" in r.stderr


def test_sign_contents_signs_the_assemblies_inside(cli, pkg, cli_pkg, pki, pwfile, tmp_path):
    r = cli(*sign_args(pki, pwfile, pkg, "--sign-contents"))
    assert r.exit_code == 0, r.stderr
    with zipfile.ZipFile(pkg) as z, zipfile.ZipFile(cli_pkg) as orig:
        assert z.namelist()[:-1] == orig.namelist()
        for n in orig.namelist():
            if not n.endswith(".dll"):
                assert z.read(n) == orig.read(n)
                assert z.getinfo(n).compress_type == orig.getinfo(n).compress_type
        dll = tmp_path / "inner.dll"
        dll.write_bytes(z.read("lib/net462/Contoso.Plain.dll"))
    res = run_tool("osslsigncode", "verify", "-in", dll, "-CAfile", pki.root.pem)
    assert res.returncode == 0 and "Signature verification: ok" in res.stdout, res.stdout + res.stderr
    r = cli("verify", pkg, "--trusted-root", pki.root.pem, "--json")
    assert r.exit_code == 0, r.stdout


# --- nuget / dotnet back-ends --------------------------------------------------------------------------

FAKE_TOOL = r'''#!{python}
"""Stand-in for nuget / dotnet: records its argv and environment, checks that the PFX it is given opens
without a password, then signs with ppmi-build's library the way the real tool would."""
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
if Path(sys.argv[0]).name == "dotnet":
    assert args[:2] == ["nuget", "sign"], args
    args = args[2:]
    opt = {{"cert": "--certificate-path", "out": "--output", "ts": "--timestamper"}}
else:
    assert args[0] == "sign", args
    args = args[1:]
    opt = {{"cert": "-CertificatePath", "out": "-OutputDirectory", "ts": "-Timestamper"}}
pkg = Path(args[0])
get = lambda k: args[args.index(opt[k]) + 1] if opt[k] in args else None
pfx = Path(get("cert"))
log = {{"argv": sys.argv, "pfx": str(pfx), "pfx_mode": oct(pfx.stat().st_mode & 0o777),
        "dir_mode": oct(pfx.parent.stat().st_mode & 0o777), "env_has_password": "PPMI_PFX_PASSWORD" in os.environ}}
Path(os.environ["FAKE_TOOL_LOG"]).write_text(json.dumps(log))
from cryptography.hazmat.primitives.serialization import pkcs12
key, cert, extra = pkcs12.load_key_and_certificates(pfx.read_bytes(), None)  # no password
from ppmi_build.signing.nuget import sign as nuget_sign
from ppmi_build.signing.nuget import verify as nuget_verify
from ppmi_build.signing.keys import LocalKey
overwrite = "-Overwrite" in args or "--overwrite" in args
nuget_sign.sign_package(pkg, Path(get("out")) / pkg.name, LocalKey(key, [cert] + list(extra or [])),
                   timestamp_urls=[get("ts")] if get("ts") else [], overwrite=overwrite)
'''


@pytest.fixture
def fake_tools(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("nuget", "dotnet"):
        p = bindir / name
        p.write_text(FAKE_TOOL.format(python=sys.executable))
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_TOOL_LOG", str(tmp_path / "tool.json"))
    return tmp_path / "tool.json"


@pytest.mark.parametrize("tool", ["nuget", "dotnet"])
def test_backend_runs_the_tool_without_a_password_in_argv(cli, pkg, pki, pwfile, pfx_password, fake_tools, tsa,
                                                          tool):
    r = cli(*sign_args(pki, pwfile, pkg, "--backend", tool, "--timestamp-url", tsa.url))
    assert r.exit_code == 0, r.stdout + r.stderr
    (rec,) = json.loads(r.stdout)
    assert rec["backend"] == tool and rec["verified"] and rec["timestamped"]
    log = json.loads(fake_tools.read_text())
    argv = " ".join(log["argv"])
    assert pfx_password not in argv
    assert "-CertificatePassword" not in argv and "--certificate-password" not in argv
    assert log["pfx_mode"] == "0o600" and log["dir_mode"] == "0o700"
    assert not log["env_has_password"]
    assert not Path(log["pfx"]).exists(), "the temporary PFX must be removed"
    assert tsa.url in log["argv"]
    r = cli("verify", pkg, "--trusted-root", pki.root.pem)
    assert r.exit_code == 0, r.stdout


@pytest.mark.parametrize("tool", ["nuget", "dotnet"])
def test_backend_tool_missing_is_exit_3(cli, pkg, pki, pwfile, tmp_path, monkeypatch, tool):
    empty = tmp_path / "nothing"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    before = snapshot(pkg.parent)
    r = cli(*sign_args(pki, pwfile, pkg, "--backend", tool))
    assert r.exit_code == 3, r.stdout + r.stderr
    assert f"{tool} is not installed" in r.stderr and "--backend python" in r.stderr
    assert snapshot(pkg.parent) == before


def test_backend_refuses_sign_contents(cli, pkg, pki, pwfile, fake_tools):
    before = snapshot(pkg.parent)
    r = cli(*sign_args(pki, pwfile, pkg, "--backend", "nuget", "--sign-contents"))
    assert r.exit_code == 2 and "--sign-contents" in r.stderr
    assert snapshot(pkg.parent) == before
    assert not fake_tools.exists(), "the tool must not run"


def test_unsign_output_checks_and_mode(cli, pkg, pki, pwfile, tmp_path, cli_pkg):
    pkg.chmod(0o644)
    assert cli(*sign_args(pki, pwfile, pkg)).exit_code == 0
    signed = pkg.read_bytes()
    folder = tmp_path / "a-folder"
    folder.mkdir()
    r = cli("unsign", pkg, "-o", folder)
    assert r.exit_code == 2 and "is a directory" in r.stderr
    r = cli("unsign", pkg, "-o", tmp_path / "missing" / "x.nupkg")
    assert r.exit_code == 2 and "does not exist" in r.stderr
    assert pkg.read_bytes() == signed and not any(p.name.endswith(".tmp") for p in pkg.parent.iterdir())
    assert cli("unsign", pkg).exit_code == 0
    assert pkg.read_bytes() == cli_pkg.read_bytes()
    assert stat.S_IMODE(pkg.stat().st_mode) == 0o644
