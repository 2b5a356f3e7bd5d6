"""Helpers for the pipeline tests (release, rotate, upgrade, doctor): a plug-in project folder wired to one or
more emulators, expected FIC values computed from the published formula, request-log helpers.

Expected FIC values come from the documentation, not from ppmi-build: domain-spec §1.1/§1.2 (issuer
``https://login.microsoftonline.com/{tenant}/v2.0``; self-signed subject
``/eid1/c/pub/t/{encodedTenantId}/a/qzXoWDkuqUa3l6zM5mM0Rw/n/plugin/e/{environmentId}/h/{sha256 of the DER}``,
lower-case hex), the encodedTenantId of tenant ``738016bf-…`` published in [WODTKE-2026] (domain-spec §7 A), and
the certificate SHA-256 read by ``openssl x509 -fingerprint -sha256``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx

from tests.conftest import run_tool

TENANT = "738016bf-2f59-46ca-9660-357d1de3b865"
ENCODED_TENANT = "vxaAc1kvykaWYDV9HeO4ZQ"  # published with TENANT ([WODTKE-2026], domain-spec §7 A)
APPLICATION = "9f3d07ca-381e-43fc-8bef-76dd03b460d6"  # domain-spec §7 I payload
APP_OBJECT = "bcd7c908-1c4d-4d48-93ee-ff38349a75c8"  # Graph docs example object id
ENV_DEV = "7efcc31a-c410-e20e-9b95-dd448cedf653"  # [WODTKE-2026]
ENV_TEST = "59b86021-2790-4a26-b386-15823676bbf4"  # [KT-CN]
UAMI = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ppmi-rg/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/ppmi-plugins")
ISSUER = f"https://login.microsoftonline.com/{TENANT}/v2.0"
AUDIENCE = "api://AzureADTokenExchange"


def openssl_sha256(pem: Path) -> str:
    """Lower-case hex SHA-256 of the certificate DER as printed by openssl (independent of ppmi-build)."""
    out = run_tool("openssl", "x509", "-in", pem, "-noout", "-fingerprint", "-sha256").stdout
    return out.strip().split("=", 1)[1].replace(":", "").lower()


def self_signed_subject(env_id: str, sha256: str) -> str:
    return f"/eid1/c/pub/t/{ENCODED_TENANT}/a/qzXoWDkuqUa3l6zM5mM0Rw/n/plugin/e/{env_id}/h/{sha256}"


def write_project(root: Path, *, graph_url: str, envs: dict[str, tuple[str, str]], cert: Path | None,
                  kind: str = "assembly", name: str = "Contoso.Strong", version: int = 2, fic_target: str = "app",
                  arm_url: str | None = None, extra_identity: str = "") -> Path:
    """Write ``ppmi.toml``. ``envs``: name -> (Dataverse url, environment id)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = [
        "[plugin]", f'kind = "{kind}"', f'name = "{name}"', "",
        "[identity]", f'tenant_id = "{TENANT}"', f'application_id = "{APPLICATION}"', f"version = {version}",
        f'fic_target = "{fic_target}"', f'application_object_id = "{APP_OBJECT}"', f'uami_resource_id = "{UAMI}"',
        f'graph_url = "{graph_url}"', f'arm_url = "{arm_url or graph_url}"', extra_identity, "",
        "[signing]", f'certificate = "{cert}"' if cert else "", 'password_env = "PPMI_PFX_PASSWORD"',
        "timestamp_urls = []", "",
    ]
    for env_name, (url, env_id) in envs.items():
        lines += [f"[environments.{env_name}]", f'url = "{url}"', f'environment_id = "{env_id}"',
                  'solution = "ContosoPlugins"', ""]
    (root / "ppmi.toml").write_text("\n".join(lines), encoding="utf-8")
    return root


def writes(emulator, since: int = 0) -> list[dict]:
    """Non-GET requests the emulator served after request number ``since``."""
    return [r for r in emulator.requests()[since:] if r["method"] != "GET"]


def graph_fics(emulator, app: str = APP_OBJECT) -> list[dict]:
    r = httpx.get(f"{emulator.url}/v1.0/applications/{app}/federatedIdentityCredentials",
                  headers={"Authorization": f"Bearer {emulator.token}"})
    r.raise_for_status()
    return r.json()["value"]


def arm_fics(emulator) -> list[dict]:
    r = httpx.get(f"{emulator.url}{UAMI}/federatedIdentityCredentials", params={"api-version": "2023-01-31"},
                  headers={"Authorization": f"Bearer {emulator.token}"})
    r.raise_for_status()
    return r.json()["value"]


def seed_graph_fics(emulator, n: int, app: str = APP_OBJECT, prefix: str = "other") -> None:
    """Create ``n`` unrelated FICs through the normal Graph API (not made by ppmi-build)."""
    for i in range(n):
        body = {"name": f"{prefix}-{i}", "issuer": "https://token.actions.githubusercontent.com",
                "subject": f"repo:contoso/app{i}:environment:prod", "audiences": [AUDIENCE]}
        r = httpx.post(f"{emulator.url}/v1.0/applications/{app}/federatedIdentityCredentials", json=body,
                       headers={"Authorization": f"Bearer {emulator.token}"})
        assert r.status_code == 201, r.text


def held_component(emulator, table: str = "pluginassembly") -> dict:
    rows = emulator.rows(table)
    assert len(rows) == 1, rows
    return rows[0]


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def parse_json(result) -> dict:
    """The one JSON document a ``--json`` run printed on stdout."""
    return json.loads(result.stdout)
