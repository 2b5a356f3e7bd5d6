"""Hostile and corrupt inputs through the CLI: one line naming the file and the fault, exit 2, within a second;
and a bounded mutation fuzz over the readers (PE, nupkg, PFX/PEM/DER certificates, ppmi.toml) that fails on any
exception other than a :class:`~ppmi_build.errors.PpmiError` or on any input that takes more than 5 s.

Reproducers are made here: certificates byte by byte (:mod:`tests.der_certs`), a DLL signed by ``osslsigncode``
(independent signer) whose embedded signer certificate then gets one corrupt byte.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ppmi_build.cli import main
from tests import der_certs as d
from tests.conftest import require_tool, run_tool
from tests.nupkg_builder import build_nupkg

TENANT = "5f8a1a9f-2e1a-415f-b10c-84c3736a21b9"
ENV_ID = "7efcc31a-c410-e20e-9b95-dd448cedf653"
PLAIN = d.utf8_cn("Contoso Hostile")
#: basicConstraints whose value claims a BOOLEAN longer than the SEQUENCE holds (RFC 5280 §4.2.1.9 shape broken).
BAD_BASIC_CONSTRAINTS = d.extension("2.5.29.19", bytes.fromhex("30030101"))


def _one_error_line(r) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def _timed(cli, *args):
    t0 = time.monotonic()
    r = cli(*args)
    return r, time.monotonic() - t0


def test_cert_show_malformed_extension_value(cli, tmp_path):
    path = tmp_path / "bad-extension.cer"
    path.write_bytes(d.certificate(PLAIN, PLAIN, [BAD_BASIC_CONSTRAINTS]))
    r, took = _timed(cli, "cert", "show", path)
    assert r.exit_code == 2 and took < 1.0
    line = _one_error_line(r)
    assert line.startswith(f"error: {path}: the certificate is corrupt: the extension basicConstraints (2.5.29.19) "
                           "is malformed")
    r = cli("cert", "show", path, "--json")
    assert r.exit_code == 2 and json.loads(r.stdout)["error"]["exit_code"] == 2


def test_cert_show_bit_string_issuer_attribute(cli, tmp_path):
    # cryptography raises TypeError on this Name; .NET renders it (Format_ComponentWithNonStringContent).
    path = tmp_path / "bit-string-issuer.cer"
    path.write_bytes(d.certificate(d.name([[("2.5.4.3", bytes.fromhex("0303003000"))]]), PLAIN))
    r, took = _timed(cli, "cert", "show", path, "--json")
    assert "Traceback" not in r.stderr and r.exit_code == 0 and took < 1.0
    assert json.loads(r.stdout)["issuer"] == "CN=#0303003000"


@pytest.fixture(scope="module")
def ossl_signed_dll(tmp_path_factory, plain_dll, pki) -> Path:
    out = tmp_path_factory.mktemp("ossl") / "signed.dll"
    require_tool("osslsigncode")
    r = run_tool("osslsigncode", "sign", "-certs", pki.leaf.pem, "-key", pki.leaf.keyfile, "-in", plain_dll,
                 "-out", out)
    assert r.returncode == 0, r.stderr
    return out


def test_fic_artifact_signer_certificate_with_one_corrupt_extension_byte(cli, ossl_signed_dll, pki, tmp_path):
    data = bytearray(ossl_signed_dll.read_bytes())
    leaf = pki.leaf.der
    at = data.find(leaf)
    assert at > 0, "the signer certificate is embedded as is"
    eku = leaf.find(bytes.fromhex("0603551d25"))  # extendedKeyUsage OID 2.5.29.37
    inner = leaf.index(b"\x04", eku + 5) + 2  # the SEQUENCE inside extnValue
    assert data[at + inner] == 0x30
    data[at + inner + 1] ^= 0x40  # its length now runs past the extension
    bad = tmp_path / "corrupt-signer.dll"
    bad.write_bytes(bytes(data))
    args = ("fic", "--artifact", bad, "--tenant-id", TENANT, "--environment-id", ENV_ID)
    r, took = _timed(cli, *args)
    assert r.exit_code == 2 and took < 1.0
    assert _one_error_line(r) == (
        f"error: {bad}: the embedded signer certificate is corrupt: the extension extendedKeyUsage (2.5.29.37) "
        "is malformed; get an intact copy from its source (re-export the .pfx/.cer, or ask the issuer for a new "
        "certificate)")
    r = cli(*args, "--json")
    assert r.exit_code == 2
    err = json.loads(r.stdout)["error"]
    assert err["exit_code"] == 2 and "extendedKeyUsage" in err["message"]


def test_sign_with_a_t61_named_certificate(cli, plain_dll, tmp_path, monkeypatch):
    t61 = bytes.fromhex("300E310C300A06035504071403C2A2F8")  # X500DistinguishedNameTests.T61Cases: L=Â¢ø
    pfx = tmp_path / "t61.pfx"
    pfx.write_bytes(d.pfx(d.certificate(t61, t61, [d.CODE_SIGNING_EKU]), b"pw"))
    monkeypatch.setenv("T61_PW", "pw")
    dll = tmp_path / "a.dll"
    shutil.copyfile(plain_dll, dll)
    r = CliRunner().invoke(main, ["sign", str(dll), "--cert", str(pfx), "--password-env", "T61_PW"])
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code == 0


# --- fuzz ---------------------------------------------------------------------------------------------------

PER_INPUT_LIMIT = 5.0  # seconds: a hostile file must not hang a pipeline
PER_FORMAT_BUDGET = float(os.environ.get("PPMI_FUZZ_SECONDS", "2.5"))  # 6 runs -> about 15 s in all


def _mutate(rnd: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(6)
        if not b:
            break
        i = rnd.randrange(len(b))
        if op == 0:
            b[i] ^= 1 << rnd.randrange(8)
        elif op == 1:
            b[i] = rnd.choice((0x00, 0x7F, 0x80, 0xFF))
        elif op == 2:
            del b[i:]  # truncate
        elif op == 3:
            b[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 16)))
        elif op == 4:
            b[i:i + 4] = rnd.choice((b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\xff\xff\xff\x7f"))
        else:
            del b[i:i + rnd.randint(1, 64)]
    return bytes(b)


def _fuzz(tmp_path: Path, name: str, seed_data: bytes, args, seed: int, env: dict | None = None) -> int:
    """Mutate ``seed_data`` until the budget is spent; run the CLI on each. Returns the number of inputs."""
    rnd = random.Random(seed)
    runner = CliRunner()
    path = tmp_path / name
    deadline = time.monotonic() + PER_FORMAT_BUDGET
    n = 0
    while time.monotonic() < deadline:
        mutated = _mutate(rnd, seed_data)
        path.write_bytes(mutated)
        t0 = time.monotonic()
        r = runner.invoke(main, [str(a) for a in args(path)], env=env)
        took = time.monotonic() - t0
        n += 1
        case = f"{name} seed={seed} input #{n} ({len(mutated)} bytes: {mutated[:64].hex()}...)"
        assert r.exception is None or isinstance(r.exception, SystemExit), \
            f"{case}: {type(r.exception).__name__}: {r.exception}"
        assert "Traceback" not in r.output, case
        assert took < PER_INPUT_LIMIT, f"{case}: took {took:.1f} s"
        if r.exit_code not in (0, 1):
            assert r.exit_code in (2, 3), f"{case}: exit {r.exit_code}"
    return n


@pytest.mark.slow
def test_fuzz_certificate_readers(tmp_path, pki, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FUZZ_PW", "correct horse battery staple")
    inputs = [("c.cer", pki.leaf.cer.read_bytes(), 1), ("c.pem", pki.leaf.pem.read_bytes(), 2),
              ("c.pfx", pki.leaf.pfx.read_bytes(), 3)]
    total = 0
    for name, data, seed in inputs:
        total += _fuzz(tmp_path, name, data,
                       lambda p: ["cert", "show", p, "--password-env", "FUZZ_PW", "--json"], seed)
    assert total > 30


@pytest.mark.slow
def test_fuzz_config_loading(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = (
        "[plugin]\nkind = \"assembly\"\nname = \"Contoso.Plugins\"\n\n[identity]\n"
        f"tenant_id = \"{TENANT}\"\nversion = 2\n\n[signing]\ncertificate = \"certs/dev.pfx\"\n"
        f"timestamp_urls = [\"http://timestamp.example/\"]\n\n[environments.dev]\nurl = \"https://contoso.crm.dynamics.com\"\n"
        f"environment_id = \"{ENV_ID}\"\n"
    ).encode()
    # fic --env reads [identity] and [environments.*]: the config-loading path every command shares
    n = _fuzz(tmp_path, "ppmi.toml", base,
              lambda p: ["fic", "--cert", "missing.cer", "--env", "dev"], 4)
    assert n > 20


@pytest.mark.slow
def test_fuzz_pe_and_package_readers(tmp_path, ossl_signed_dll, plain_dll, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pkg = build_nupkg(tmp_path / "seed.nupkg", dlls=[plain_dll])
    n = _fuzz(tmp_path, "a.dll", ossl_signed_dll.read_bytes(),
              lambda p: ["fic", "--artifact", p, "--tenant-id", TENANT, "--environment-id", ENV_ID, "--json"], 5)
    n += _fuzz(tmp_path, "b.dll", ossl_signed_dll.read_bytes(), lambda p: ["verify", p, "--json"], 6)
    n += _fuzz(tmp_path, "c.nupkg", pkg.read_bytes(), lambda p: ["verify", p, "--json"], 7)
    assert n > 20


def test_cert_show_duplicate_extension(cli, tmp_path):
    # Found by the fuzz loop: cryptography raises DuplicateExtension (not a ValueError) at first use.
    path = tmp_path / "twice.cer"
    path.write_bytes(d.certificate(PLAIN, PLAIN, [d.CODE_SIGNING_EKU, d.CODE_SIGNING_EKU]))
    r, took = _timed(cli, "cert", "show", path)
    assert r.exit_code == 2 and took < 1.0
    assert "the extension extendedKeyUsage (2.5.29.37) appears twice" in _one_error_line(r)
