"""Bad configuration and environment input (build settings, ppmi.toml types and values, environment variables):
each is refused with exit 2, one line naming the input and the fix, no traceback (the in-process CliRunner runs
with ``catch_exceptions=False``, so a traceback fails the test), and with ``--json`` one JSON error document on
stdout — or, where the value is usable, read correctly.

Independent expectations: the FIC issuer/subject of a ``ppmi.toml`` read from UTF-16 come from the documented
formulas (tests/pipeline_helpers.py: domain-spec §1.1/§1.2, the certificate SHA-256 read by ``openssl x509``);
the byte-order marks are Python's ``codecs`` constants (Unicode §23.8); a timestamp taken from a one-string
``timestamp_urls`` is checked by ``osslsigncode verify``; "no write" is the emulator's own request log.
"""

from __future__ import annotations

import codecs
import json
import logging
import shutil
import stat
import sys
from pathlib import Path

import pytest

from ppmi_build.errors import ConfigError, GuidError
from tests.conftest import run_tool
from tests.e2e.test_rotate import rotate, setup  # noqa: F401  (fixture: a project released once into the emulator)
from tests.emulator_fixture import emulator, emulator_env  # noqa: F401
from tests.pipeline_helpers import (
    APPLICATION,
    ENV_DEV,
    TENANT,
    graph_fics,
    openssl_sha256,
    self_signed_subject,
    sha256_file,
    write_project,
    writes,
)

ZERO = "00000000-0000-0000-0000-000000000000"


def json_error(r) -> dict:
    """The ``{"error": {...}}`` document a failed ``--json`` run printed on stdout."""
    doc = json.loads(r.stdout)
    assert set(doc["error"]) >= {"message", "exit_code"}, doc
    assert "\n" not in doc["error"]["message"]
    return doc["error"]


def assert_refused(r, *parts: str) -> str:
    """Exit 2, one ``error:`` line on stderr naming ``parts``, the same message in the JSON document."""
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    err = json_error(r)
    assert err["exit_code"] == 2
    for p in parts:
        assert p in err["message"], (p, err["message"])
    assert f"error: {err['message']}" in r.stderr.splitlines()
    assert "Traceback" not in r.stderr
    return err["message"]


# --- #10: ppmi.toml encodings -------------------------------------------------------------------------------


def toml_text(**extra: str) -> str:
    """A ppmi.toml with the tenant and environment ``dev``; ``extra``: more lines per section."""
    sections = {"plugin": "", "identity": f'tenant_id = "{TENANT}"\nversion = 2', "signing": "",
                "environments.dev": f'environment_id = "{ENV_DEV}"'}
    for name, lines in extra.items():
        sections[name.replace("__", ".")] += "\n" + lines
    return "\n\n".join(f"[{name}]\n{body.strip()}" for name, body in sections.items()) + "\n"


@pytest.mark.parametrize("encoding", ["utf-16-le-bom", "utf-16-be-bom", "utf-8-bom"])
def test_ppmi_toml_with_a_byte_order_mark_is_read(cli, tmp_path, monkeypatch, pki, encoding):
    """Windows PowerShell 5 writes ``Out-File``/``>`` as UTF-16 LE with BOM and ``-Encoding utf8`` as UTF-8 with
    BOM, with CRLF line ends: the FIC computed from such a file is the documented one."""
    text = toml_text().replace("\n", "\r\n")
    raw = {"utf-16-le-bom": codecs.BOM_UTF16_LE + text.encode("utf-16-le"),
           "utf-16-be-bom": codecs.BOM_UTF16_BE + text.encode("utf-16-be"),
           "utf-8-bom": codecs.BOM_UTF8 + text.encode("utf-8")}[encoding]
    (tmp_path / "ppmi.toml").write_bytes(raw)
    monkeypatch.chdir(tmp_path)
    r = cli("fic", "--cert", pki.self_signed.pem, "--env", "dev", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["issuer"] == f"https://login.microsoftonline.com/{TENANT}/v2.0"
    assert doc["subject"] == self_signed_subject(ENV_DEV, openssl_sha256(pki.self_signed.pem))


@pytest.mark.parametrize(("raw", "says"), [
    (toml_text().encode("utf-16-le"), "looks like UTF-16 or UTF-32 text without a byte-order mark"),  # no BOM
    (toml_text(plugin='name = "Caf\u00e9"').encode("cp1252"), "is not UTF-8 text (byte 0xe9"),  # Windows ANSI
    (codecs.BOM_UTF16_LE + b"\x00\xd8[\x00", "starts with a UTF-16 byte-order mark but is not valid UTF-16"),
])
def test_ppmi_toml_in_another_encoding_is_refused(cli, tmp_path, monkeypatch, pki, raw, says):
    cfg = tmp_path / "ppmi.toml"
    cfg.write_bytes(raw)
    monkeypatch.chdir(tmp_path)
    r = cli("fic", "--cert", pki.self_signed.pem, "--env", "dev", "--json")
    msg = assert_refused(r, str(cfg), says, "save it as UTF-8")
    assert cfg.read_bytes() == raw and msg.count(str(cfg)) == 1


# --- #10/#11: value types -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("extra", "says"), [
    ({"environments__dev": "url = 5"}, ["[environments.dev] url = 5 is an integer", "url must be a string"]),
    ({"signing": "certificate = 5"}, ["[signing] certificate = 5 is an integer", "certificate must be a string"]),
    ({"signing": "password_env = false"}, ["[signing] password_env = false is a boolean", "must be a string"]),
    ({"identity": 'application_id = ["a"]'}, ["[identity] application_id", "is an array", "must be a string"]),
    ({"plugin": "kind = 1979-05-27"}, ["[plugin] kind = 1979-05-27 is a date/time", "kind must be a string"]),
    ({"plugin": 'name = {x = "y"}'}, ["[plugin] name", "is a table", "name must be a string"]),
    ({"signing": 'timestamp_urls = ["http://tsa.example", 5]'},
     ["[signing] timestamp_urls", "item 2 is an integer", "must be an array of strings (or one string)"]),
    ({"signing": "timestamp_urls = 5"}, ["[signing] timestamp_urls = 5 is an integer"]),
    ({"identity": "cloud = 1.5"}, ["[identity] cloud = 1.5 is a float", "cloud must be a string"]),
])
def test_wrong_value_types_name_file_key_and_type(cli, tmp_path, monkeypatch, pki, extra, says):
    (tmp_path / "ppmi.toml").write_text(toml_text(**extra), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    r = cli("fic", "--cert", pki.self_signed.pem, "--env", "dev", "--json")
    assert_refused(r, str(tmp_path / "ppmi.toml"), *says)


def test_version_as_a_string_says_to_drop_the_quotes(cli, tmp_path, monkeypatch, pki):
    (tmp_path / "ppmi.toml").write_text(toml_text().replace("version = 2", 'version = "2"'), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    r = cli("fic", "--cert", pki.self_signed.pem, "--env", "dev", "--json")
    assert_refused(r, '[identity] version = "2" is a string', "version must be an integer",
                   "without quotes: version = 2")
    (tmp_path / "ppmi.toml").write_text(toml_text().replace("version = 2", "version = true"), encoding="utf-8")
    assert_refused(cli("fic", "--cert", pki.self_signed.pem, "--env", "dev", "--json"),
                   "version = true is a boolean", "must be an integer")


def test_timestamp_urls_as_one_string(tmp_path):
    """#11: one string is one URL (several: separated by spaces or commas, like PPMI_TIMESTAMP_URLS), not a list
    of characters."""
    from ppmi_build.config import load_settings

    cfg = tmp_path / "ppmi.toml"
    cfg.write_text(toml_text(signing='timestamp_urls = "http://tsa.example/ts"'), encoding="utf-8")
    assert load_settings(cfg, environ={}).signing.timestamp_urls == ["http://tsa.example/ts"]
    cfg.write_text(toml_text(signing='timestamp_urls = "http://a.example, http://b.example"'), encoding="utf-8")
    assert load_settings(cfg, environ={}).signing.timestamp_urls == ["http://a.example", "http://b.example"]
    cfg.write_text(toml_text(signing='timestamp_urls = ""'), encoding="utf-8")
    assert load_settings(cfg, environ={}).signing.timestamp_urls == []


@pytest.mark.interop
def test_sign_uses_a_one_string_timestamp_url(cli, tmp_path, monkeypatch, pki, password_env, tsa, strong_named_dll):
    """End to end: ``timestamp_urls = "<one URL>"`` gives a timestamped signature (it used to be iterated per
    character and fail with exit 3); osslsigncode verifies the timestamp countersignature."""
    (tmp_path / "ppmi.toml").write_text(toml_text(signing=f'timestamp_urls = "{tsa.url}"'), encoding="utf-8")
    dll = tmp_path / "x.dll"
    shutil.copyfile(strong_named_dll, dll)
    monkeypatch.chdir(tmp_path)
    r = cli("sign", dll, "--cert", pki.leaf.pfx, "--json")
    assert r.exit_code == 0, r.stderr
    res = run_tool("osslsigncode", "verify", "-in", dll, "-CAfile", pki.root.pem, "-TSA-CAfile", pki.root.pem)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Timestamp Server Signature verification: ok" in res.stdout


def test_name_inside_an_environment_table_is_unknown(tmp_path):
    """``[environments.dev] name`` would rename the environment behind the user's back: an unknown key."""
    from ppmi_build.config import load_settings

    cfg = tmp_path / "ppmi.toml"
    cfg.write_text(toml_text(environments__dev='name = "prod"'), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown key 'name' in \[environments.dev\]"):
        load_settings(cfg, environ={})


# --- #10/#16: tokens in the environment ---------------------------------------------------------------------


@pytest.fixture
def fresh_notes(monkeypatch):
    """Forget which set-but-empty variables were already noted in this process (the note is once per run)."""
    from ppmi_build.http import tokens as auth

    monkeypatch.setattr(auth, "_NOTED_EMPTY", set(), raising=False)


@pytest.fixture
def released(cli, tmp_path, emulator, monkeypatch, password_env, strong_named_dll, pki):  # noqa: F811
    """A project pointing Dataverse and Graph at the emulator, and a strong-named DLL (not released)."""
    monkeypatch.setenv("PPMI_ACCESS_TOKEN", emulator.token)
    monkeypatch.setenv("PPMI_HTTP_BACKOFF", "0.01")
    monkeypatch.setenv("PPMI_HTTP_RETRIES", "1")
    for var in ("PPMI_PFX_BASE64", "PPMI_CERT", "PPMI_TIMESTAMP_URLS", "PPMI_GRAPH_URL", "PPMI_ARM_URL",
                "PPMI_GRAPH_TOKEN", "PPMI_ARM_TOKEN", "PPMI_AUTH"):
        monkeypatch.delenv(var, raising=False)
    dll = tmp_path / "out" / strong_named_dll.name
    dll.parent.mkdir()
    shutil.copyfile(strong_named_dll, dll)
    return dll


@pytest.mark.parametrize("bad", ["tök\u00e9n-caf\u00e9", "abc\x07def", "abc def", "abc\u00a0def"])
def test_access_token_with_impossible_characters(cli, emulator_env, strong_named_dll, monkeypatch, bad):  # noqa: F811
    """Non-ASCII / control characters / inner spaces in PPMI_ACCESS_TOKEN: exit 2 before any request (httpx used
    to raise UnicodeEncodeError from inside the request); the value is never shown."""
    monkeypatch.setenv("PPMI_ACCESS_TOKEN", bad)
    monkeypatch.delenv("PPMI_AUTH", raising=False)
    mark = len(emulator_env.requests())
    r = cli("register", "--env", "emu", strong_named_dll, "--plan", "--json")
    msg = assert_refused(r, "PPMI_ACCESS_TOKEN holds characters an access token cannot have")
    assert bad.strip() not in r.stdout + r.stderr and "abc" not in msg
    assert emulator_env.requests()[mark:] == []


@pytest.mark.parametrize(("var", "fic_target"), [("PPMI_GRAPH_TOKEN", "app"), ("PPMI_ARM_TOKEN", "uami")])
def test_graph_and_arm_tokens_with_impossible_characters(cli, emulator, released, tmp_path, pki,  # noqa: F811
                                                         monkeypatch, var, fic_target):
    proj = write_project(tmp_path / "proj", graph_url=emulator.url, envs={"dev": (emulator.url, ENV_DEV)},
                         cert=pki.self_signed.pfx, fic_target=fic_target)
    monkeypatch.setenv(var, "eyJ0eXAi.s\u00e9cret")
    mark = len(emulator.requests())
    r = cli("release", "--env", "dev", "--project", proj, released, "--plan", "--json")
    msg = assert_refused(r, f"{var} holds characters an access token cannot have")
    assert "s\u00e9cret" not in r.stdout + r.stderr and "eyJ0eXAi" not in msg
    assert writes(emulator, mark) == []
    assert not any("federatedIdentityCredentials" in q["path"] for q in emulator.requests()[mark:])


def test_empty_graph_token_is_ignored_with_one_note(cli, emulator, released, tmp_path, pki, monkeypatch,  # noqa: F811
                                                    fresh_notes):
    """#16: set but empty (what a CI template passes for an undefined secret) = not set, said once on stderr:
    the Graph calls use PPMI_ACCESS_TOKEN."""
    proj = write_project(tmp_path / "proj", graph_url=emulator.url, envs={"dev": (emulator.url, ENV_DEV)},
                         cert=pki.self_signed.pfx)
    monkeypatch.setenv("PPMI_GRAPH_TOKEN", "")
    r = cli("release", "--env", "dev", "--project", proj, released, "--plan", "--json")
    assert r.exit_code == 0, r.stderr
    notes = [line for line in r.stderr.splitlines() if "PPMI_GRAPH_TOKEN" in line]
    assert notes == ["note: PPMI_GRAPH_TOKEN is set but empty; ignoring it (unset it, or set it to an access token)"]
    assert json.loads(r.stdout)["plan"] is True


class _NoisyUnavailable:
    """Stands in for ``DefaultAzureCredential`` on a machine without credentials, logging what azure-identity and
    MSAL log (per-credential WARNING, an MSAL traceback at ERROR) before giving up."""

    def __init__(self, *args, **kwargs):
        pass

    def get_token(self, *scopes, **kwargs):
        from azure.identity import CredentialUnavailableError

        logging.getLogger("azure.identity._credentials.default").warning(
            "DefaultAzureCredential failed to retrieve a token from the included credentials.")
        try:
            raise ValueError("not json")
        except ValueError:
            logging.getLogger("msal.oauth2cli.oauth2").exception("Token response is not in json format: <html>")
        raise CredentialUnavailableError(message="no credential is configured")


@pytest.mark.parametrize("value", ["", "  ", "Bearer "])
def test_empty_access_token_falls_back_quietly(cli, emulator_env, strong_named_dll, monkeypatch, caplog,  # noqa: F811
                                               fresh_notes, value):
    """#16: an empty PPMI_ACCESS_TOKEN counts as not set (one note), the azure-identity fallback reports "no
    credentials" in one line (exit 2) and none of azure-identity's or MSAL's log records get through without
    ``-v``; with ``-v`` they do."""
    ai = pytest.importorskip("azure.identity")
    monkeypatch.setattr(ai, "DefaultAzureCredential", _NoisyUnavailable)
    monkeypatch.setenv("PPMI_ACCESS_TOKEN", value)
    monkeypatch.delenv("PPMI_AUTH", raising=False)
    for var in ("ACTIONS_ID_TOKEN_REQUEST_URL", "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"):
        monkeypatch.delenv(var, raising=False)
    caplog.set_level(logging.DEBUG)
    mark = len(emulator_env.requests())
    r = cli("register", "--env", "emu", strong_named_dll, "--plan", "--json")
    assert_refused(r, "no Dataverse credentials", "PPMI_ACCESS_TOKEN")
    assert [line for line in r.stderr.splitlines() if line.startswith("note:")] == [
        "note: PPMI_ACCESS_TOKEN is set but empty; ignoring it (unset it, or set it to an access token)"]
    noisy = [rec for rec in caplog.records if rec.name.startswith(("azure", "msal"))]
    assert noisy == [], [rec.getMessage() for rec in noisy]
    assert emulator_env.requests()[mark:] == []
    caplog.clear()
    r = cli("-v", "register", "--env", "emu", strong_named_dll, "--plan", "--json")
    assert r.exit_code == 2 and "note:" not in r.stderr  # once per run (process)
    assert {rec.name.split(".")[0] for rec in caplog.records if rec.name.startswith(("azure", "msal"))} == \
        {"azure", "msal"}


def test_static_token_cleaning():
    from ppmi_build.http.tokens import StaticToken, clean_token, env_token

    assert clean_token("  Bearer eyJ.a-b_c~d+e/f=  ") == "eyJ.a-b_c~d+e/f="
    for bad in ("", "  ", "Bearer", "bearer  "):
        with pytest.raises(ConfigError, match="PPMI_ACCESS_TOKEN is empty"):
            StaticToken(bad)
    with pytest.raises(ConfigError, match=r"PPMI_ARM_TOKEN holds .*\(a control character at position 2 "):
        env_token({"PPMI_ARM_TOKEN": "a\nb"}, "PPMI_ARM_TOKEN")
    assert env_token({"PPMI_GRAPH_TOKEN": "", "PPMI_ACCESS_TOKEN": "t"}, "PPMI_GRAPH_TOKEN", "PPMI_ACCESS_TOKEN") \
        == ("t", "PPMI_ACCESS_TOKEN")


# --- #9: --plan runs the real run's certificate checks; rotate --new-cert expired ------------------------------


def test_release_plan_refuses_an_expired_certificate(cli, emulator, released, tmp_path, pki):  # noqa: F811
    proj = write_project(tmp_path / "proj", graph_url=emulator.url, envs={"dev": (emulator.url, ENV_DEV)},
                         cert=pki.expired.pfx)
    mark, before = len(emulator.requests()), sha256_file(released)
    for extra in (("--plan",), ()):
        r = cli("release", "--env", "dev", "--project", proj, released, "--json", *extra)
        assert_refused(r, str(pki.expired.pfx), "the certificate expired on")
        assert "planned" not in r.stdout
    assert writes(emulator, mark) == [] and sha256_file(released) == before


def test_release_plan_of_a_package_applies_the_nuget_rules(cli, emulator, released, tmp_path, pki):  # noqa: F811
    """A package project (no ARTIFACT, nothing built in --plan): the lifetime-signing EKU certificate, fine for
    Authenticode, is refused with NuGet's NU3015 by --plan just as by the real run."""
    from ppmi_build.project.scaffold import scaffold

    root = tmp_path / "pkg"
    scaffold(root, "Contoso.Pkg", kind="package", snk_bits=1024)
    write_project(root, graph_url=emulator.url, envs={"dev": (emulator.url, ENV_DEV)}, cert=pki.lifetime.pfx,
                  kind="package", name="Contoso.Pkg")
    mark = len(emulator.requests())
    r = cli("release", "--env", "dev", "--project", root, "--plan", "--json")
    assert_refused(r, "NU3015", str(pki.lifetime.pfx))
    assert json_error(r)["code"] == "NU3015"
    assert writes(emulator, mark) == []


def test_rotate_to_an_expired_certificate(cli, emulator, setup, pki):  # noqa: F811
    """--plan and the real run both refuse it, before any write (no POST/PUT/PATCH/DELETE in the emulator's
    request log, FICs unchanged), and the fix is to pick another certificate, not to "rotate"."""
    proj, dll = setup
    mark, before, fics = len(emulator.requests()), sha256_file(dll), graph_fics(emulator)
    for extra in (("--plan",), ()):
        r = rotate(cli, proj, dll, pki.expired.pfx, *extra)
        msg = assert_refused(r, f"--new-cert {pki.expired.pfx}", "the certificate expired on",
                             "pick a valid (unexpired) certificate for --new-cert")
        assert "rotate (ppmi-build rotate)" not in msg
    assert writes(emulator, mark) == []
    assert sha256_file(dll) == before and graph_fics(emulator) == fics


# --- #8: secrets are kept from dotnet ----------------------------------------------------------------------


SECRETS = {"PPMI_PFX_PASSWORD": "pfx-pw", "PPMI_PFX_BASE64": "UEZY", "PPMI_ACCESS_TOKEN": "at",
           "PPMI_GRAPH_TOKEN": "gt", "PPMI_ARM_TOKEN": "rt", "AZURE_CLIENT_SECRET": "cs",
           "AZURE_CLIENT_CERTIFICATE_PASSWORD": "ccp", "AZURE_FEDERATED_TOKEN": "ft", "SYSTEM_ACCESSTOKEN": "sat",
           "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "oidc", "CONTOSO_PFX_PW": "toml-pw", "CONTOSO_CLI_PW": "cli-pw"}


@pytest.fixture
def env_dumping_dotnet(tmp_path, monkeypatch):
    """A ``dotnet`` that writes the names and values of its environment to a file, then fails like a build
    error (exit 1): the test only needs what it was given."""
    dump = tmp_path / "dotnet-env.json"
    exe = tmp_path / "bin" / "dotnet"
    exe.parent.mkdir()
    exe.write_text(f"#!{sys.executable}\nimport json, os\n"
                   f"json.dump(dict(os.environ), open({str(dump)!r}, 'w'))\n"
                   "print('Program.cs(1,1): error CS1001: stand-in dotnet stops here')\nraise SystemExit(1)\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PPMI_DOTNET", str(exe))
    monkeypatch.setenv("CONTOSO_HARMLESS", "kept")
    return dump


def test_build_keeps_secrets_from_dotnet(tmp_path, monkeypatch, env_dumping_dotnet):
    from ppmi_build.project.dotnet import BuildFailed, build
    from ppmi_build.project.scaffold import scaffold

    root = tmp_path / "proj"
    scaffold(root, "Contoso.Plugins", kind="assembly", snk_bits=1024)
    cfg = root / "ppmi.toml"
    cfg.write_text(cfg.read_text(encoding="utf-8").replace('password_env = "PPMI_PFX_PASSWORD"',
                                                           'password_env = "CONTOSO_PFX_PW"'), encoding="utf-8")
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(BuildFailed):
        build(root, secret_env=["CONTOSO_CLI_PW"], record=False)
    seen = json.loads(env_dumping_dotnet.read_text())
    assert set(SECRETS) & set(seen) == set()
    assert not set(SECRETS.values()) & set(seen.values())
    assert seen["CONTOSO_HARMLESS"] == "kept" and seen["DOTNET_CLI_UI_LANGUAGE"] == "en"


def test_release_keeps_the_password_env_from_dotnet(cli, emulator, released, tmp_path, pki, pfx_password,  # noqa: F811
                                                    monkeypatch, env_dumping_dotnet):
    """``release --password-env VAR`` (no ARTIFACT: it builds): VAR and the tokens never reach dotnet."""
    from ppmi_build.project.scaffold import scaffold

    root = tmp_path / "proj"
    scaffold(root, "Contoso.Strong", kind="assembly", snk_bits=1024)
    write_project(root, graph_url=emulator.url, envs={"dev": (emulator.url, ENV_DEV)}, cert=pki.self_signed.pfx)
    monkeypatch.setenv("CONTOSO_RELEASE_PW", pfx_password)
    monkeypatch.setenv("PPMI_GRAPH_TOKEN", emulator.token)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "cs")
    r = cli("release", "--env", "dev", "--project", root, "--password-env", "CONTOSO_RELEASE_PW", "--json")
    assert r.exit_code == 3 and "stand-in dotnet stops here" in json_error(r)["message"], r.stderr
    seen = json.loads(env_dumping_dotnet.read_text())
    for var in ("CONTOSO_RELEASE_PW", "PPMI_PFX_PASSWORD", "PPMI_ACCESS_TOKEN", "PPMI_GRAPH_TOKEN",
                "AZURE_CLIENT_SECRET"):
        assert var not in seen, var
    assert pfx_password not in seen.values() and emulator.token not in seen.values()


def test_secret_env_names_is_the_one_list():
    from ppmi_build.config import Settings, secret_env_names

    s = Settings(root=Path("."))
    s.signing.password_env = "CONTOSO_PFX_PW"
    names = secret_env_names(s, ["CONTOSO_CLI_PW", None, ""])
    assert set(SECRETS) <= names and "" not in names and "PATH" not in names
    assert "CONTOSO_PFX_PW" not in secret_env_names()


# --- #20: the all-zero GUID --------------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["tenant ID", "application ID", "environment ID", "managed identity ID"])
@pytest.mark.parametrize("text", [ZERO, "00000000000000000000000000000000", "{00000000-0000-0000-0000-000000000000}",
                                  "{0x0,0x0,0x0,{0x0,0x0,0x0,0x0,0x0,0x0,0x0,0x0}}"])
def test_guid_empty_is_refused_for_ids(label, text):
    from ppmi_build.identity.guids import parse_guid

    with pytest.raises(GuidError, match=f"^{label} .* is the all-zero GUID \\(Guid.Empty\\)"):
        parse_guid(text, label)
    assert parse_guid(text, "GUID").value == ZERO  # a plain GUID may be empty


def test_fic_with_an_all_zero_tenant(cli, pki, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = cli("fic", "--cert", pki.self_signed.pem, "--tenant-id", ZERO, "--environment-id", ENV_DEV, "--json")
    assert_refused(r, f"tenant ID '{ZERO}' is the all-zero GUID", "Microsoft Entra admin center")


def test_release_with_an_all_zero_environment_id(cli, emulator, released, tmp_path, pki):  # noqa: F811
    proj = write_project(tmp_path / "proj", graph_url=emulator.url, envs={"dev": (emulator.url, ZERO)},
                         cert=pki.self_signed.pfx)
    mark = len(emulator.requests())
    assert_refused(cli("release", "--env", "dev", "--project", proj, released, "--plan", "--json"),
                   f"environment ID '{ZERO}' is the all-zero GUID", "Power Platform admin center")
    assert emulator.requests()[mark:] == []


def test_bind_with_an_all_zero_managed_identity_id(cli, emulator_env, strong_named_dll, tmp_path,  # noqa: F811
                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PPMI_TENANT_ID", TENANT)
    monkeypatch.setenv("PPMI_APPLICATION_ID", APPLICATION)
    monkeypatch.setenv("PPMI_MANAGED_IDENTITY_ID", ZERO)
    mark = len(emulator_env.requests())
    assert_refused(cli("bind", "--env", "emu", strong_named_dll, "--plan", "--json"),
                   f"managed identity ID '{ZERO}' is the all-zero GUID")
    assert emulator_env.requests()[mark:] == []
