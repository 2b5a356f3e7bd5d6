"""Entra's cap of 20 FICs per identity for a Trusted Signing certificate whose issuing CA changes.

Against the emulator with ``--rotate-issuers`` (operation *n* is answered by issuing CA *n* mod 2, its models
docstring): a first release creates the FIC for one issuing CA; the Graph store is then filled to 20 through its
Graph endpoint (FICs of the same subject for an issuer outside the known issuer set, FICs ppmi-build made for this
environment for certificates no longer used, unrelated FICs). A ``release --plan`` and a ``release`` whose
certificate comes from the other issuing CA need a new FIC: both refuse (exit 1, one ``error:`` line) before any
write — the artifact's bytes, Dataverse and Graph unchanged — naming the FICs that could go and the one in use.
After deleting one that could go, the release creates the FIC, whose subject equals the version-2 subject computed
in the test from the embedded certificate (domain-spec §1.2, .NET DN strings rendered by the test's own renderer).
"""

from __future__ import annotations

import base64
import hashlib
import json

import httpx
import pytest

from tests.conftest import require_tool
from tests.e2e.test_trusted_signing import (  # noqa: F401  (fixtures found by name)
    EMULATOR_ISSUERS,
    SUBJECT,
    dll,
    dotnet_dn,
    embedded_leaf,
    key_uri,
    operations,
    ts_emulator,
    ts_env,
    v2_subject,
)
from tests.pipeline_helpers import (
    APP_OBJECT,
    AUDIENCE,
    ENCODED_TENANT,
    ENV_DEV,
    ISSUER,
    graph_fics,
    held_component,
    seed_graph_fics,
    sha256_file,
    write_project,
)

#: an issuing CA outside the known issuer set (the data file, the emulator's two in [signing] extra_issuers)
RETIRED_CA = "CN=Contoso Retired Issuing CA, O=Contoso Ltd"


def b64url_sha256(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()


def add_fic(emu, name: str, subject: str, description: str | None = None) -> None:
    body = {"name": name, "issuer": ISSUER, "subject": subject, "audiences": [AUDIENCE]}
    if description:
        body["description"] = description
    r = httpx.post(f"{emu.url}/v1.0/applications/{APP_OBJECT}/federatedIdentityCredentials", json=body,
                   headers={"Authorization": f"Bearer {emu.token}"})
    assert r.status_code == 201, r.text


def next_operation_uses(emu, issuer_dn: str) -> None:
    """Make the emulator's next sign operation come from ``issuer_dn`` (by spending one operation when needed)."""
    wanted = [d.split(",")[0].removeprefix("CN=") for d in EMULATOR_ISSUERS].index(
        issuer_dn.split(",")[0].removeprefix("CN="))
    if len(operations(emu)) % 2 != wanted:
        r = httpx.post(f"{emu.url}/codesigningaccounts/acct/certificateprofiles/prof/sign",
                       params={"api-version": "2023-06-15-preview"},
                       json={"signatureAlgorithm": "RS256", "digest": base64.b64encode(b"\0" * 32).decode()},
                       headers={"Authorization": f"Bearer {emu.token}"})
        assert r.status_code == 202, r.text
    assert len(operations(emu)) % 2 == wanted


def non_signing_writes(emu, since: int) -> list[dict]:
    return [q for q in emu.requests()[since:] if q["method"] != "GET" and "certificateprofiles" not in q["path"]]


def error_line(r) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error")]
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.mark.interop
def test_new_issuer_at_the_cap_names_the_fics_that_could_go(cli, ts_env, dll, tsa, tmp_path,  # noqa: F811
                                                             password_env):
    require_tool("osslsigncode")
    emu = ts_env
    proj = write_project(tmp_path / "proj", graph_url=emu.url, envs={"dev": (emu.url, ENV_DEV)}, cert=None)
    toml = proj / "ppmi.toml"
    extra = ", ".join(f'"{d}"' for d in EMULATOR_ISSUERS)
    toml.write_text(toml.read_text().replace(
        "timestamp_urls = []", f'timestamp_urls = ["{tsa.url}"]\nkey = "{key_uri(emu)}"\nextra_issuers = [{extra}]'))
    args = ("release", "--env", "dev", "--project", proj, dll)

    r1 = cli(*args, "--json")
    assert r1.exit_code == 0, r1.output
    leaf1 = embedded_leaf(dll, tmp_path)
    (in_use,) = graph_fics(emu)
    assert in_use["subject"] == v2_subject(ENV_DEV, leaf1)
    other_ca = next(d for d in EMULATOR_ISSUERS if d != dotnet_dn(leaf1.issuer))

    # fill the identity to Entra's 20: 1 in use + 2 for a retired CA + 3 stale ppmi-build FICs + 14 unrelated
    prefix = f"/eid1/c/pub/t/{ENCODED_TENANT}/a/qzXoWDkuqUa3l6zM5mM0Rw/n/plugin/e/{ENV_DEV}"
    retired = ["contoso-retired-ca", "contoso-retired-ca-2"]
    add_fic(emu, retired[0], f"{prefix}/i/{b64url_sha256(RETIRED_CA)}/s/{b64url_sha256(SUBJECT)}")
    add_fic(emu, retired[1], f"{prefix}/i/{b64url_sha256(RETIRED_CA + ' 2')}/s/{b64url_sha256(SUBJECT)}")
    stale = [f"ppmi-7efcc31a-old{i}" for i in range(3)]
    for i, name in enumerate(stale):
        add_fic(emu, name, f"{prefix}/h/{hashlib.sha256(bytes([i])).hexdigest()}")
    seed_graph_fics(emu, 14)
    assert len(graph_fics(emu)) == 20
    signed = sha256_file(dll)
    rows_before = (emu.rows("pluginassembly"), emu.rows("managedidentity"))

    for extra_args in (("--plan",), ()):
        next_operation_uses(emu, other_ca)
        mark = len(emu.requests())
        r = cli(*args, *extra_args, "--json")
        assert r.exit_code == 1, r.output
        line = error_line(r)
        assert "already has 20 federated identity credentials, Entra's maximum is 20" in line
        assert f"for the new issuer {other_ca} of {SUBJECT}" in line
        assert ("for issuers not in its known issuer set (could go): " + ", ".join(retired)) in line
        assert ("whose certificate is no longer used (could go): " + ", ".join(stale)) in line
        assert f"in use by the deployed plug-in (must stay): {in_use['name']}" in line
        assert in_use["name"] not in line.split("must stay")[0]
        assert json.loads(r.stdout)["error"]["code"] == "FIC_CAP"
        # nothing written: the file, Dataverse and Graph (only the probe sign operation was sent)
        assert sha256_file(dll) == signed
        assert non_signing_writes(emu, mark) == []
        assert (emu.rows("pluginassembly"), emu.rows("managedidentity")) == rows_before
        assert len(graph_fics(emu)) == 20
        assert emu.token not in r.output

    # deleting one that could go lets the release through: the new issuer's FIC is created before binding
    victim = next(f for f in graph_fics(emu) if f["name"] == retired[0])
    httpx.delete(f"{emu.url}/v1.0/applications/{APP_OBJECT}/federatedIdentityCredentials/{victim['id']}",
                 headers={"Authorization": f"Bearer {emu.token}"}).raise_for_status()
    next_operation_uses(emu, other_ca)
    r = cli(*args, "--json")
    assert r.exit_code == 0, r.output
    leaf2 = embedded_leaf(dll, tmp_path)
    assert dotnet_dn(leaf2.issuer) == other_ca
    subjects = [f["subject"] for f in graph_fics(emu)]
    assert len(subjects) == 20 and v2_subject(ENV_DEV, leaf2) in subjects and in_use["subject"] in subjects
    assert base64.b64decode(held_component(emu)["content"]) == dll.read_bytes()
