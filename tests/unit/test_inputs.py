"""Input that is almost right, and hostile input, through the CLI: one line naming the file or variable and what
is wrong, exit 2, nothing written, within a second.

The pasted characters are the ones documents and dialogs produce: typographic quotes U+201C/U+201D (word
processors' "smart quotes"), U+00A0 NO-BREAK SPACE (web pages), U+200B ZERO WIDTH SPACE, and U+200E
LEFT-TO-RIGHT MARK, which the Windows certificate dialog puts before a copied thumbprint. The v0 FIC values come
from the published formula (domain-spec §1.0, §7 C) with the thumbprint read by openssl.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.conftest import run_tool
from tests.pipeline_helpers import ENV_DEV, TENANT

LRM, NBSP, ZWSP, LQ, RQ = "\u200e", "\u00a0", "\u200b", "\u201c", "\u201d"
V0_ISSUER = "https://7efcc31ac410e20e9b95dd448cedf6.53.environment.api.powerplatform.com/sts"  # domain-spec §7 C


@pytest.fixture
def project(tmp_path, monkeypatch, strong_named_dll):
    for var in [v for v in os.environ if v.startswith("PPMI_")]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PPMI_ACCESS_TOKEN", "t")
    return tmp_path


def run_config(cli, project, text: str | bytes, dll, env: dict | None = None):
    """``register`` (it reads ppmi.toml first) over a ppmi.toml holding ``text``; the file must stay unchanged."""
    path = project / "ppmi.toml"
    raw = text.encode("utf-8") if isinstance(text, str) else text
    path.write_bytes(raw)
    start = time.monotonic()
    r = cli("register", "--env", "dev", dll, env=env)
    assert time.monotonic() - start < 1.0
    assert path.read_bytes() == raw
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    return r.stderr.strip()


def test_misspelled_tables_and_keys_all_reported_with_did_you_mean(cli, project, strong_named_dll):
    err = run_config(cli, project, '[environment.dev]\nurl = "https://x.crm.dynamics.com"\n[sigining]\n'
                     'certificate = "a.pfx"\n[plugins]\nkind = "package"\n[identity]\ntenantid = "x"\n',
                     strong_named_dll)
    assert "has 4 problems" in err
    assert "unknown table [environment]; did you mean 'environments'?" in err
    assert "unknown table [sigining]; did you mean 'signing'?" in err
    assert "unknown table [plugins]; did you mean 'plugin'?" in err
    assert "unknown key 'tenantid' in [identity]; did you mean 'tenant_id'?" in err
    assert "not configured" not in err


def test_thousand_nested_arrays(cli, project, strong_named_dll):
    err = run_config(cli, project, "[plugin]\nkind = " + "[" * 1000 + "]" * 1000 + "\n", strong_named_dll)
    assert len(err.splitlines()) == 1 and "ppmi.toml" in err and "nest deeper than" in err and "line 2" in err


@pytest.mark.parametrize("url, words", [
    ("http://[::1", ["[environments.dev] url", "not a valid URL", "Invalid IPv6 URL"]),
    ("https://7efcc31ac410e20e9b95dd448cedf6.53.enviornment.api.powerplatform.com",
     ["typo 'enviornment'", "use 'environment'", ".53.environment.api.powerplatform.com"]),
])
def test_bad_environment_url(cli, project, strong_named_dll, url, words):
    err = run_config(cli, project, f'[environments.dev]\nurl = "{url}"\nenvironment_id = "{ENV_DEV}"\n',
                     strong_named_dll)
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_http_timeout_not_finite(cli, project, strong_named_dll, value):
    err = run_config(cli, project, f'[environments.dev]\nurl = "http://127.0.0.1:9"\nenvironment_id = "{ENV_DEV}"\n',
                     strong_named_dll, env={"PPMI_HTTP_TIMEOUT": value})
    assert len(err.splitlines()) == 1 and f"PPMI_HTTP_TIMEOUT='{value}'" in err


def test_typographic_quotes_in_toml(cli, project, strong_named_dll):
    err = run_config(cli, project, f"[identity]\ntenant_id = {LQ}{TENANT}{RQ}\n", strong_named_dll)
    assert "line 2" in err and "contains typographic quotes" in err and "use straight quotes" in err
    assert len(err.splitlines()) == 1


def test_invisible_characters_in_toml_values_all_named(cli, project, strong_named_dll):
    err = run_config(cli, project, f'[identity]\ntenant_id = "{NBSP}{TENANT}"\napplication_id = "{TENANT}{ZWSP}"\n'
                     f'[environments.dev]\nurl = "https://x.crm.dynamics.com"\nenvironment_id = "{ENV_DEV}"\n',
                     strong_named_dll)
    assert "has 2 problems" in err
    assert "[identity] tenant_id" in err and "non-breaking space (U+00A0 NO-BREAK SPACE at character 1)" in err
    assert "[identity] application_id" in err and "invisible character (U+200B ZERO WIDTH SPACE" in err


def test_invisible_character_in_environment_variable(cli, project, strong_named_dll):
    err = run_config(cli, project, '[plugin]\nkind = "assembly"\n', strong_named_dll,
                     env={"PPMI_ENV_DEV_URL": "https://x.crm.dynamics.com",
                          "PPMI_ENV_DEV_ENVIRONMENT_ID": LRM + ENV_DEV})
    assert err == (f"error: PPMI_ENV_DEV_ENVIRONMENT_ID '\\u200e{ENV_DEV}' contains an invisible character (U+200E "
                   "LEFT-TO-RIGHT MARK at character 1); remove it (retype the value or delete the character)")


@pytest.mark.parametrize("args, words", [
    (("fic", "--cert", "x.pfx", "--tenant-id", f"{LQ}{TENANT}{RQ}", "--environment-id", ENV_DEV),
     ["'--tenant-id'", "typographic quotes"]),
    (("fic", "--cert", "x.pfx", "--environment-id", f"{ENV_DEV}{ZWSP}"), ["'--environment-id'", "ZERO WIDTH SPACE"]),
    (("cert", "new", "--subject", f"CN={LQ}Contoso{RQ}", "--out", "certs"), ["'--subject'", "typographic quotes"]),
    (("sign", "x.dll", "--cert", "x.pfx", "--timestamp-url", f"http://timestamp.digicert.com{NBSP}"),
     ["'--timestamp-url'", "non-breaking space"]),
    (("init", "p", "--name", "P", "--application-id", f"{NBSP}{TENANT}"), ["'--application-id'", "non-breaking"]),
])
def test_pasted_characters_on_the_command_line(cli, project, args, words):
    r = cli(*args)
    assert r.exit_code == 2
    assert all(w in r.stderr for w in words), r.stderr
    assert not (project / "certs").exists() and not (project / "p").exists()


def test_fic_thumbprint_as_copied_from_the_windows_dialog(cli, project, pki):
    out = run_tool("openssl", "x509", "-in", pki.self_signed.pem, "-noout", "-fingerprint", "-sha1").stdout
    sha1 = out.strip().split("=", 1)[1].replace(":", "").upper()
    dialog = LRM + " ".join(sha1[i:i + 2] for i in range(0, 40, 2)).lower()  # "d8 4a …" as Windows shows it
    r = cli("fic", "--thumbprint", dialog, "--environment-id", ENV_DEV, "--json")
    assert r.exit_code == 0, r.stderr
    import json

    doc = json.loads(r.stdout)
    assert (doc["issuer"], doc["subject"], doc["audience"]) == (
        V0_ISSUER, f"component:pluginassembly,thumbprint:{sha1},environment:{ENV_DEV}", "api://azureadtokenexchange")
    assert "U+200E LEFT-TO-RIGHT MARK" in r.stderr and f"normalized to {sha1}" in r.stderr
    # only version 0 can come from a thumbprint; garbage is named
    r = cli("fic", "--thumbprint", dialog, "--environment-id", ENV_DEV, "--mi-version", "2")
    assert r.exit_code == 2 and "only the version 0 FIC" in r.stderr
    r = cli("fic", "--thumbprint", "d8 4a", "--environment-id", ENV_DEV)
    assert r.exit_code == 2 and "not 40 hex digits" in r.stderr
