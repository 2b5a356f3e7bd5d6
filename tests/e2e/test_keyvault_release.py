"""``ppmi-build release`` and ``rotate`` from Linux with the signing certificate in (emulated) Azure Key Vault.

One emulator serves Dataverse, Graph and Key Vault (seeded with ``--vault-certificate signer=PFX``, the test
PKI's leaf issued by its intermediate). What is shown, and how it is checked independently of ppmi-build's code:
* ``release --key keyvault:…`` and ``[signing] key = "keyvault:…"`` sign the DLL (``osslsigncode verify -CAfile``
  the test root accepts it; the signer is the vault's certificate), register it (Dataverse holds the signed bytes)
  and bind it (``managedidentities`` version 2, bound);
* the FIC in the emulator's Graph store equals the version-2 FIC computed here from the certificate:
  ``base64url(SHA-256(UTF-8(.NET DN)))`` of the issuer and subject (domain-spec §1.2), the DNs rendered by the
  tiny .NET-order renderer below (not ppmi_build.identity.dn);
* ``rotate --new-key keyvault:…`` from a PFX-signed release adds the vault certificate's FIC before re-registering,
  keeps the old FIC, and the held content verifies with the vault certificate;
* the bearer token never appears in any output.
"""

from __future__ import annotations

import base64
import hashlib
import shutil

import pytest
from cryptography import x509

from ppmi_build.emulator import start
from tests.conftest import require_tool, run_tool
from tests.pipeline_helpers import (
    AUDIENCE,
    ENCODED_TENANT,
    ENV_DEV,
    ISSUER,
    graph_fics,
    held_component,
    openssl_sha256,
    parse_json,
    self_signed_subject,
    sha256_file,
    write_project,
)
from tests.pki import PFX_PASSWORD

TOKEN = "kv-release-token-3Jd8"

_DOTNET_KEYS = {"2.5.4.3": "CN", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.7": "L", "2.5.4.8": "S", "2.5.4.6": "C"}


def dotnet_dn(name: x509.Name) -> str:
    """.NET's ``X500DistinguishedName.Name`` for a plain-ASCII DN of single-valued RDNs: last RDN first, ``, ``
    between RDNs, CryptoAPI short names (domain-spec §1.2)."""
    return ", ".join(f"{_DOTNET_KEYS[a.oid.dotted_string]}={a.value}" for rdn in reversed(list(name.rdns)) for a in rdn)


def b64url_sha256(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode("utf-8")).digest()).rstrip(b"=").decode()


def v2_subject(env_id: str, cert: x509.Certificate) -> str:
    """domain-spec §1.2: ``…/e/{env}/i/{b64url(sha256(issuer DN))}/s/{b64url(sha256(subject DN))}``."""
    return (f"/eid1/c/pub/t/{ENCODED_TENANT}/a/qzXoWDkuqUa3l6zM5mM0Rw/n/plugin/e/{env_id}"
            f"/i/{b64url_sha256(dotnet_dn(cert.issuer))}/s/{b64url_sha256(dotnet_dn(cert.subject))}")


@pytest.fixture
def vault_emulator(pki, monkeypatch, password_env):
    """Dataverse + Graph + Key Vault (``signer`` = the test leaf) in one emulator; ppmi-build pointed at it."""
    emu = start(token=TOKEN, options={"vault_certificates": {"signer": pki.leaf.pfx},
                                      "vault_pfx_password": PFX_PASSWORD})
    monkeypatch.setenv("PPMI_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("PPMI_HTTP_BACKOFF", "0.01")
    monkeypatch.setenv("PPMI_HTTP_RETRIES", "1")
    for var in ("PPMI_PFX_BASE64", "PPMI_CERT", "PPMI_TIMESTAMP_URLS", "PPMI_GRAPH_URL", "PPMI_ARM_URL",
                "PPMI_AUTH"):
        monkeypatch.delenv(var, raising=False)
    try:
        yield emu
    finally:
        emu.stop()


def key_uri(emu) -> str:
    return f"keyvault:{emu.url}/certificates/signer"


@pytest.fixture
def dll(tmp_path, strong_named_dll):
    path = tmp_path / "artifacts" / strong_named_dll.name
    path.parent.mkdir()
    shutil.copyfile(strong_named_dll, path)
    return path


def assert_released_with_vault_certificate(emu, dll, pki, tmp_path):
    """osslsigncode accepts the file and the content Dataverse holds with the test root; the signer is the vault's
    certificate; the record is version 2 and bound."""
    held = tmp_path / "held.dll"
    asm = held_component(emu)
    held.write_bytes(base64.b64decode(asm["content"]))
    assert held.read_bytes() == dll.read_bytes()
    v = run_tool("osslsigncode", "verify", "-in", held, "-CAfile", pki.root.pem)
    assert v.returncode == 0 and "Signature verification: ok" in v.stdout, v.stdout + v.stderr
    assert "Contoso Plug-in Signing" in v.stdout  # the vault's certificate signed it
    mi = emu.rows("managedidentity")
    assert len(mi) == 1 and mi[0]["version"] == 2 and mi[0]["credentialsource"] == 2
    assert asm["managedidentityid"] == mi[0]["managedidentityid"]


@pytest.mark.interop
@pytest.mark.parametrize("via", ["--key", "ppmi.toml"])
def test_release_with_key_vault_certificate(cli, vault_emulator, dll, pki, tmp_path, via):
    require_tool("osslsigncode")
    emu = vault_emulator
    proj = write_project(tmp_path / "proj", graph_url=emu.url, envs={"dev": (emu.url, ENV_DEV)}, cert=None)
    args = ["release", "--env", "dev", "--project", proj, dll, "--cert-chain", pki.intermediate.pem, "--json"]
    if via == "--key":
        args += ["--key", key_uri(emu)]
    else:
        toml = proj / "ppmi.toml"
        toml.write_text(toml.read_text().replace("timestamp_urls = []",
                                                 f'timestamp_urls = []\nkey = "{key_uri(emu)}"'))
    r = cli(*args)
    assert r.exit_code == 0, r.output
    doc = parse_json(r)
    statuses = {(a["kind"], a["status"]) for a in doc["actions"]}
    assert {("sign", "created"), ("fic", "created"), ("pluginassembly", "created"), ("binding", "created")} <= \
        statuses
    assert_released_with_vault_certificate(emu, dll, pki, tmp_path)
    assert [(f["issuer"], f["subject"], f["audiences"]) for f in graph_fics(emu)] == [
        (ISSUER, v2_subject(ENV_DEV, pki.leaf.cert), [AUDIENCE])]
    assert any(q["path"].startswith("/keys/signer/") for q in emu.requests())  # signed by the vault
    assert TOKEN not in r.output

    # a re-run signs nothing and writes nothing
    signed = sha256_file(dll)
    mark = len(emu.requests())
    r2 = cli(*args)
    assert r2.exit_code == 0, r2.output
    assert parse_json(r2)["changed"] is False
    assert [q for q in emu.requests()[mark:] if q["method"] != "GET"] == []
    assert sha256_file(dll) == signed


@pytest.mark.interop
def test_rotate_to_a_key_vault_certificate(cli, vault_emulator, dll, pki, tmp_path):
    require_tool("osslsigncode")
    emu = vault_emulator
    proj = write_project(tmp_path / "proj", graph_url=emu.url, envs={"dev": (emu.url, ENV_DEV)},
                         cert=pki.self_signed.pfx)
    r1 = cli("release", "--env", "dev", "--project", proj, dll, "--json")
    assert r1.exit_code == 0, r1.output
    old_subject = self_signed_subject(ENV_DEV, openssl_sha256(pki.self_signed.pem))
    assert [f["subject"] for f in graph_fics(emu)] == [old_subject]

    mark = len(emu.requests())
    r2 = cli("rotate", "--env", "dev", "--project", proj, dll, "--new-key", key_uri(emu),
             "--cert-chain", pki.intermediate.pem, "--json")
    assert r2.exit_code == 0, r2.output
    new_subject = v2_subject(ENV_DEV, pki.leaf.cert)
    assert sorted(f["subject"] for f in graph_fics(emu)) == sorted([old_subject, new_subject])
    # the new FIC was created before Dataverse changed
    log = [q for q in emu.requests()[mark:] if q["method"] != "GET"]
    fic_posts = [i for i, q in enumerate(log) if "federatedIdentityCredentials" in q["path"]]
    dv_writes = [i for i, q in enumerate(log) if q["path"].startswith("/api/data/")]
    assert len(fic_posts) == 1 and dv_writes and fic_posts[0] < min(dv_writes)
    assert_released_with_vault_certificate(emu, dll, pki, tmp_path)
    steps = "\n".join(parse_json(r2).get("next_steps") or [])
    assert f'key = "{key_uri(emu)}"' in steps  # the next step names the [signing] key line for ppmi.toml
    assert TOKEN not in r1.output + r2.output
