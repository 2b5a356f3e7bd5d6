"""`ppmi-build demo`: the README's first command. Its outputs are checked with independent tools."""

import json
import re

import pytest

from tests.conftest import run_tool

# domain-spec §7 A: the doc example tenant encodes to this (re-computed there from Guid.ToByteArray()).
EXAMPLE_TENANT_ENCODED = "nxqKXxouX0GxDITDc2ohuQ"


@pytest.mark.interop
def test_demo_signs_verifies_and_prints_fic(cli, tmp_path):
    work = tmp_path / "demo"
    r = cli("demo", "--workdir", work, "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    dll = work / "Contoso.Demo.Plugins.dll"
    assert doc["sign"]["path"] == str(dll) and doc["sign"]["verified"] is True
    assert doc["verify"]["valid"] is True and doc["verify"]["problems"] == []

    # osslsigncode (independent) accepts the Authenticode signature, trusting the demo certificate
    res = run_tool("osslsigncode", "verify", "-in", dll, "-CAfile", work / "demo-signing.pem")
    assert res.returncode == 0 and "Signature verification: ok" in res.stdout, res.stdout + res.stderr
    # the assembly keeps its strong name (Mono sn)
    res = run_tool("sn", "-q", "-v", dll)
    assert res.returncode == 0, res.stdout + res.stderr

    # FIC (v2, self-signed => h/ + lower-case SHA-256 of the DER, domain-spec §1.1/§1.2); the hash is openssl's
    res = run_tool("openssl", "x509", "-in", work / "demo-signing.cer", "-inform", "DER", "-noout",
                   "-fingerprint", "-sha256")
    sha256 = res.stdout.strip().split("=", 1)[1].replace(":", "").lower()
    fic = doc["fic"]
    assert fic["issuer"] == "https://login.microsoftonline.com/5f8a1a9f-2e1a-415f-b10c-84c3736a21b9/v2.0"
    assert fic["audience"] == "api://AzureADTokenExchange"
    assert fic["subject"] == (f"/eid1/c/pub/t/{EXAMPLE_TENANT_ENCODED}/a/qzXoWDkuqUa3l6zM5mM0Rw/n/plugin/e/"
                              f"7efcc31a-c410-e20e-9b95-dd448cedf653/h/{sha256}")

    # the emulator now holds the assembly bound to a version-2 managed identity row
    bound = doc["dataverse"]["bound"]
    assert bound["managedidentity"]["version"] == 2
    assert bound["component"]["_managedidentityid_value"] == bound["managedidentity"]["managedidentityid"]


def test_demo_human_output_names_the_three_fic_values(cli, tmp_path):
    r = cli("demo", "--workdir", tmp_path / "d", "--no-dataverse")
    assert r.exit_code == 0, r.stderr
    for label in ("Issuer", "Subject identifier", "Audience"):
        assert re.search(rf"^\s+{label}\s+\S+", r.stdout, re.M), r.stdout
