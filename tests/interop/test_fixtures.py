"""Checks on the shared test infrastructure itself, with independent tools."""

import subprocess

from tests.conftest import require_tool, run_tool


def test_pki_chain_verifies_with_openssl(pki):
    res = run_tool("openssl", "verify", "-CAfile", pki.root.pem, "-untrusted", pki.intermediate.pem, pki.leaf.pem)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith(": OK")


def test_loopback_tsa_answers_a_real_query(tsa, tmp_path, pki):
    require_tool("openssl")
    data = tmp_path / "data.bin"
    data.write_bytes(b"hello")
    q = tmp_path / "q.tsq"
    subprocess.run(["openssl", "ts", "-query", "-data", data, "-sha256", "-cert", "-out", q], check=True)
    import httpx

    r = httpx.post(tsa.url, content=q.read_bytes(), headers={"Content-Type": "application/timestamp-query"})
    assert r.status_code == 200
    (tmp_path / "r.tsr").write_bytes(r.content)
    res = run_tool("openssl", "ts", "-verify", "-data", data, "-in", tmp_path / "r.tsr",
                   "-CAfile", pki.root.pem, "-untrusted", pki.tsa.pem)
    assert "Verification: OK" in res.stdout, res.stdout + res.stderr


def test_mcs_builds_strong_named_assembly(strong_named_dll):
    res = run_tool("sn", "-q", "-v", strong_named_dll)
    assert res.returncode == 0, res.stdout + res.stderr
