"""``ppmi-build doctor``: tools, configuration, certificate expiry (warn 30 days ahead), FIC presence and record
version for each environment (against the emulators over loopback HTTP)."""

from __future__ import annotations

import datetime as dt
import shutil

import httpx
import pytest
from cryptography.hazmat.primitives import hashes

from ppmi_build.pipeline.doctor import DoctorReport, check_tools, run_doctor
from tests.emulator_fixture import emulator  # noqa: F401
from tests.pipeline_helpers import (
    APP_OBJECT,
    AUDIENCE,
    ENV_DEV,
    ISSUER,
    openssl_sha256,
    parse_json,
    self_signed_subject,
    write_project,
)


@pytest.fixture
def env(monkeypatch, emulator, password_env):  # noqa: F811
    monkeypatch.setenv("PPMI_ACCESS_TOKEN", emulator.token)
    monkeypatch.setenv("PPMI_HTTP_BACKOFF", "0.01")
    for var in ("PPMI_PFX_BASE64", "PPMI_CERT", "PPMI_TIMESTAMP_URLS", "PPMI_TENANT_ID", "PPMI_APPLICATION_ID"):
        monkeypatch.delenv(var, raising=False)


def by_name(report) -> dict[str, dict]:
    return {c["name"]: c for c in report.to_json()["checks"]}


def test_tools_found_and_missing():
    r = DoctorReport()
    check_tools(r)
    checks = {c.name: c for c in r.checks}
    if shutil.which("openssl"):
        assert checks["tool:openssl"].status == "ok" and "OpenSSL" in checks["tool:openssl"].detail
    r = DoctorReport()
    check_tools(r, which=lambda name: None)
    checks = {c.name: c for c in r.checks}
    assert checks["tool:dotnet"].status == "warn" and "PATH" in checks["tool:dotnet"].detail
    assert not r.failed  # missing tools warn, they do not fail


def test_config_problems(tmp_path, env):
    (tmp_path / "ppmi.toml").write_text(
        '[identity]\ntenant_id = "not-a-guid"\nversion = 1\nfic_target = "uami"\nuami_resource_id = "/bad"\n'
        '[environments.dev]\nurl = "http://example.com"\n', encoding="utf-8")
    rep = run_doctor(tmp_path, online=False)
    c = by_name(rep)
    assert c["config:identity.tenant_id"]["status"] == "fail"
    assert c["config:identity.application_id"]["status"] == "fail" and "PPMI_APPLICATION_ID" in \
        c["config:identity.application_id"]["detail"]
    assert c["config:identity.uami_resource_id"]["status"] == "fail"
    assert c["config:identity.version"]["status"] == "warn" and "upgrade" in c["config:identity.version"]["detail"]
    env_check = c["config:environments.dev"]
    assert env_check["status"] == "fail" and "not https" in env_check["detail"] and "environment ID" in \
        env_check["detail"]
    assert rep.failed


def test_broken_toml_is_a_failed_check(tmp_path, env):
    (tmp_path / "ppmi.toml").write_text("[identity\n", encoding="utf-8")
    rep = run_doctor(tmp_path, online=False)
    assert by_name(rep)["config:file"]["status"] == "fail"


def test_certificate_expiry(tmp_path, env, emulator, pki, monkeypatch):  # noqa: F811
    proj = write_project(tmp_path / "p", graph_url=emulator.url, envs={"dev": (emulator.url, ENV_DEV)},
                         cert=pki.self_signed.pfx)
    not_after = pki.self_signed.cert.not_valid_after_utc
    soon = by_name(run_doctor(proj, online=False, now=not_after - dt.timedelta(days=10)))
    assert soon["certificate:validity"]["status"] == "warn" and "expires in 10 days" in \
        soon["certificate:validity"]["detail"]
    later = by_name(run_doctor(proj, online=False, now=not_after - dt.timedelta(days=31)))
    assert later["certificate:validity"]["status"] == "ok"
    after = by_name(run_doctor(proj, online=False, now=not_after + dt.timedelta(days=1)))
    assert after["certificate:validity"]["status"] == "fail" and "expired" in after["certificate:validity"]["detail"]
    assert by_name(run_doctor(proj, online=False))["certificate:self-signed"]["status"] == "warn"
    # an expired certificate from the test PKI (independent dates)
    proj2 = write_project(tmp_path / "p2", graph_url=emulator.url, envs={}, cert=pki.expired.pfx)
    assert by_name(run_doctor(proj2, online=False))["certificate:validity"]["status"] == "fail"
    # wrong password: the certificate check fails with the reason
    proj3 = write_project(tmp_path / "p3", graph_url=emulator.url, envs={}, cert=pki.self_signed.pfx)
    monkeypatch.setenv("PPMI_PFX_PASSWORD", "wrong")
    c = by_name(run_doctor(proj3, online=False))
    assert c["certificate"]["status"] == "fail" and "password" in c["certificate"]["detail"].lower()


def test_environment_checks_before_and_after_release(cli, tmp_path, env, emulator, strong_named_dll, pki):  # noqa: F811
    proj = write_project(tmp_path / "p", graph_url=emulator.url, envs={"dev": (emulator.url, ENV_DEV)},
                         cert=pki.self_signed.pfx)
    c = by_name(run_doctor(proj))  # nothing deployed: the configured certificate's FIC is missing -> warning
    assert c["environment:dev:fic"]["status"] == "warn" and "release --env dev" in c["environment:dev:fic"]["detail"]
    assert c["environment:dev:record"]["status"] == "warn"

    # a FIC that differs only in case is reported as such
    subject = self_signed_subject(ENV_DEV, openssl_sha256(pki.self_signed.pem))
    httpx.post(f"{emulator.url}/v1.0/applications/{APP_OBJECT}/federatedIdentityCredentials",
               json={"name": "upper", "issuer": ISSUER, "subject": subject.upper(), "audiences": [AUDIENCE]},
               headers={"Authorization": f"Bearer {emulator.token}"}).raise_for_status()
    c = by_name(run_doctor(proj))
    assert c["environment:dev:fic"]["status"] == "fail" and "letter case" in c["environment:dev:fic"]["detail"]

    dll = tmp_path / strong_named_dll.name
    shutil.copyfile(strong_named_dll, dll)
    assert cli("release", "--env", "dev", "--project", proj, dll).exit_code == 0
    mark = len(emulator.requests())
    r = cli("doctor", "--project", proj, "--json")
    doc = parse_json(r)
    c = {x["name"]: x for x in doc["checks"]}
    assert c["environment:dev:fic"]["status"] == "ok"
    assert c["environment:dev:record"]["status"] == "ok" and "version 2" in c["environment:dev:record"]["detail"]
    assert r.exit_code == (1 if any(x["status"] == "fail" for x in doc["checks"]) else 0)
    assert [q for q in emulator.requests()[mark:] if q["method"] != "GET"] == []  # doctor only reads

    # a version-0 record: doctor says to upgrade, and checks the FIC of the deployed plug-in for version 0
    mid = emulator.rows("managedidentity")[0]["managedidentityid"]
    httpx.patch(f"{emulator.api_url}/managedidentities({mid})", json={"version": None},
                headers={"Authorization": f"Bearer {emulator.token}", "If-Match": "*"}).raise_for_status()
    c = by_name(run_doctor(proj))
    assert c["environment:dev:record"]["status"] == "warn" and "upgrade --env dev --to 2" in \
        c["environment:dev:record"]["detail"] and "null" in c["environment:dev:record"]["detail"]
    assert c["environment:dev:fic"]["status"] == "fail" and "deployed" in c["environment:dev:fic"]["detail"]
    v0_issuer = "https://7efcc31ac410e20e9b95dd448cedf6.53.environment.api.powerplatform.com/sts"  # spec §7 C
    thumb = pki.self_signed.cert.fingerprint(hashes.SHA1()).hex().upper()
    httpx.post(f"{emulator.url}/v1.0/applications/{APP_OBJECT}/federatedIdentityCredentials",
               json={"name": "v0-fic", "issuer": v0_issuer, "audiences": ["api://azureadtokenexchange"],
                     "subject": f"component:pluginassembly,thumbprint:{thumb},environment:{ENV_DEV}"},
               headers={"Authorization": f"Bearer {emulator.token}"}).raise_for_status()
    c = by_name(run_doctor(proj))
    assert c["environment:dev:fic"]["status"] == "ok" and "'v0-fic'" in c["environment:dev:fic"]["detail"]


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _failed_lines(stdout: str) -> list[str]:
    return [ln for ln in stdout.splitlines() if ln.startswith("FAIL")]


def test_no_credentials_fails(cli, tmp_path, env, emulator, pki, monkeypatch):  # noqa: F811
    """No token at all: doctor is a CI preflight, so the Dataverse and FIC checks fail (exit 1); they used to be
    warnings with "0 failed" and exit 0."""
    monkeypatch.delenv("PPMI_ACCESS_TOKEN")
    monkeypatch.setenv("PPMI_AUTH", "static")
    proj = write_project(tmp_path / "p", graph_url=emulator.url, envs={"dev": (emulator.url, ENV_DEV)},
                         cert=pki.self_signed.pfx)
    r = cli("doctor", "--project", proj)
    assert r.exit_code == 1
    failed = _failed_lines(r.stdout)
    assert any("environment:dev:dataverse" in ln and "PPMI_ACCESS_TOKEN" in ln for ln in failed), r.stdout
    assert any("identity:fics" in ln and "PPMI_ACCESS_TOKEN" in ln for ln in failed), r.stdout
    assert "0 failed" not in r.stdout and ", 2 failed, " in r.stdout.splitlines()[-1]
    assert emulator.requests() == []


def test_refused_token_fails(cli, tmp_path, env, emulator, pki, monkeypatch):  # noqa: F811
    monkeypatch.setenv("PPMI_ACCESS_TOKEN", "not-the-emulator-token")
    proj = write_project(tmp_path / "p", graph_url=emulator.url, envs={"dev": (emulator.url, ENV_DEV)},
                         cert=pki.self_signed.pfx)
    r = cli("doctor", "--project", proj, "--json")
    assert r.exit_code == 1
    doc = parse_json(r)
    c = {x["name"]: x for x in doc["checks"]}
    assert doc["ok"] is False and doc["summary"]["fail"] == 2
    assert c["environment:dev:dataverse"]["status"] == "fail" and "401" in c["environment:dev:dataverse"]["detail"]
    assert c["identity:fics"]["status"] == "fail" and "401" in c["identity:fics"]["detail"]
    assert {q["status"] for q in emulator.requests()} == {401}
    assert "not-the-emulator-token" not in r.stdout + r.stderr


def test_unreachable_dataverse_fails(cli, tmp_path, env, emulator, pki, monkeypatch):  # noqa: F811
    monkeypatch.setenv("PPMI_HTTP_RETRIES", "0")
    url = f"http://127.0.0.1:{_closed_port()}"
    proj = write_project(tmp_path / "p", graph_url=emulator.url, envs={"dev": (url, ENV_DEV)},
                         cert=pki.self_signed.pfx)
    r = cli("doctor", "--project", proj)
    assert r.exit_code == 1
    (line,) = _failed_lines(r.stdout)
    assert "environment:dev:dataverse" in line and url in line and "after 1 attempt: ConnectError" in line
    assert "identity:fics" in r.stdout and "WARN" not in [ln[:4] for ln in r.stdout.splitlines()
                                                         if "identity:fics" in ln]
