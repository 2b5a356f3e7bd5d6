"""The Dataverse emulator, driven with plain httpx (not ppmi-build's client), against the documented behaviours.

Expected values come from the sources cited in ``ppmi_build.emulator.dataverse`` (Web API create/update responses,
OData error codes, domain-spec §2 and §4) and from independent tools: ``osslsigncode`` signed the assemblies,
``sn -T`` gave the public key token, the plug-in type names are the classes written in ``tests/dataverse_artifacts.py``.
"""

# ruff: noqa: F811  (pytest fixtures imported from tests.emulator_fixture / tests.dataverse_artifacts)
from __future__ import annotations

import base64
import dataclasses
import json
import re
import subprocess
import sys
import time

import httpx
import pytest

from ppmi_build.emulator.core.routing import Route
from tests.conftest import run_tool
from tests.dataverse_artifacts import dv  # noqa: F401
from tests.emulator_fixture import emulator  # noqa: F401

APP = "9f3d07ca-381e-43fc-8bef-76dd03b460d6"
TENANT = "7f2c1900-9fd4-4b89-91d3-79a649996f0a"
MI_ID = "0bb91e27-1d0c-4a60-973c-ed810d9695ff"


def b64(path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def http(emu, **extra) -> httpx.Client:
    headers = {"Authorization": f"Bearer {emu.token}", "Accept": "application/json", "OData-Version": "4.0",
               "OData-MaxVersion": "4.0", **extra}
    return httpx.Client(base_url=emu.api_url + "/", headers=headers, timeout=30)


def assembly_body(dv, path=None, **over):
    path = path or dv.asm_v1
    body = {"name": "Contoso.Plugins", "content": b64(path), "isolationmode": 2, "sourcetype": 0,
            "version": "1.0.0.0", "culture": "neutral", "publickeytoken": dv.token_v1}
    body.update(over)
    return body


def test_create_204_entity_id_then_201_with_representation(emulator, dv):
    with http(emulator) as c:
        r = c.post("managedidentities", json={"applicationid": APP, "tenantid": TENANT, "credentialsource": 2,
                                              "subjectscope": 1, "version": 2})
        assert r.status_code == 204 and r.content == b""
        entity_id = r.headers["OData-EntityId"]
        assert entity_id.startswith(emulator.api_url + "/managedidentities(")
        mid = entity_id.rsplit("(", 1)[1].rstrip(")")
        r = c.post("pluginassemblies", params={"$select": "name,version,publickeytoken"},
                   json=assembly_body(dv), headers={"Prefer": "return=representation"})
        assert r.status_code == 201
        row = r.json()
        assert set(row) == {"@odata.context", "@odata.etag", "name", "version", "publickeytoken", "pluginassemblyid"}
        assert row["publickeytoken"] == dv.token_v1 and row["version"] == "1.0.0.0"
        # v9.0 path serves the same data
        r = httpx.get(f"{emulator.url}/api/data/v9.0/managedidentities({mid})",
                      headers={"Authorization": f"Bearer {emulator.token}"}, params={"$select": "version"})
        assert r.status_code == 200 and r.json()["version"] == 2
    db = emulator.rows("pluginassembly")[0]
    assert (db["isolationmode"], db["sourcetype"], db["culture"]) == (2, 0, "neutral")
    assert base64.b64decode(db["content"]) == dv.asm_v1.read_bytes()


def test_filter_select_and_lookup_values(emulator, dv):
    with http(emulator, Prefer="return=representation") as c:
        c.post("pluginassemblies", json=assembly_body(dv)).raise_for_status()
        # Dataverse string comparisons are case-insensitive
        rows = c.get("pluginassemblies", params={"$select": "name,_packageid_value,_managedidentityid_value",
                                                 "$filter": "name eq 'contoso.plugins'"}).json()["value"]
        assert len(rows) == 1 and rows[0]["_packageid_value"] is None and rows[0]["_managedidentityid_value"] is None
        assert "content" not in rows[0]
        assert c.get("pluginassemblies", params={"$filter": "name eq 'Other'"}).json()["value"] == []
        r = c.get("pluginassemblies", params={"$select": "nosuchcolumn"})
        assert r.status_code == 400 and "Could not find a property named 'nosuchcolumn'" in r.json()["error"]["message"]
        r = c.get("pluginassemblies", params={"$filter": "name eq 'a''b' or startswith(name,'Contoso')",
                                              "$select": "name"})
        assert [x["name"] for x in r.json()["value"]] == ["Contoso.Plugins"]


def test_unknown_column_duplicate_key_and_nothing_written(emulator, dv):
    with http(emulator) as c:
        r = c.post("managedidentities", json={"applicationid": APP, "colour": "blue"})
        assert r.status_code == 400
        err = r.json()["error"]
        assert err["code"] == "0x80060888" and "'colour' does not exist" in err["message"]
        assert emulator.rows("managedidentity") == []
        body = {"managedidentityid": MI_ID, "applicationid": APP, "tenantid": TENANT, "version": 2}
        assert c.post("managedidentities", json=body).status_code == 204
        r = c.post("managedidentities", json=body)
        assert r.status_code == 412 and r.json()["error"]["code"] == "0x80040237"
    assert len(emulator.rows("managedidentity")) == 1


def test_patch_if_match_and_upsert(emulator):
    with http(emulator) as c:
        r = c.patch(f"managedidentities({MI_ID})", json={"applicationid": APP}, headers={"If-Match": "*"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "0x80040217"
        assert emulator.rows("managedidentity") == []
        r = c.patch(f"managedidentities({MI_ID})", json={"applicationid": APP, "tenantid": TENANT})  # upsert
        assert r.status_code == 204
        r = c.patch(f"managedidentities({MI_ID})", json={"version": 2},
                    headers={"If-Match": "*", "Prefer": "return=representation"}, params={"$select": "version"})
        assert r.status_code == 200 and r.json()["version"] == 2
    row = emulator.rows("managedidentity")[0]
    # credentialsource / subjectscope default to 0 when not sent (domain-spec §2.2)
    assert (row["credentialsource"], row["subjectscope"], row["version"]) == (0, 0, 2)


def test_bind_requires_signed_assembly(emulator, dv):
    with http(emulator, Prefer="return=representation") as c:
        aid = c.post("pluginassemblies", json=assembly_body(dv, dv.asm_v1_unsigned)).json()["pluginassemblyid"]
        c.post("managedidentities", json={"managedidentityid": MI_ID, "applicationid": APP, "tenantid": TENANT,
                                          "credentialsource": 2, "subjectscope": 1, "version": 2}).raise_for_status()
        bind = {"managedidentityid@odata.bind": f"/managedidentities({MI_ID})"}
        r = c.patch(f"pluginassemblies({aid})", json=bind, headers={"If-Match": "*"})
        assert r.status_code == 400
        assert r.json()["error"] == {"code": "0x80040216", "message": "Plugin assembly must be signed with valid "
                                     "certificate to associate to Managed Identity"}
        assert emulator.rows("pluginassembly")[0]["managedidentityid"] is None
        # the osslsigncode-signed build of the same assembly binds
        r = c.patch(f"pluginassemblies({aid})", json={"content": b64(dv.asm_v1)}, headers={"If-Match": "*"})
        assert r.status_code == 200
        r = c.patch(f"pluginassemblies({aid})", json=bind, params={"$select": "_managedidentityid_value"},
                    headers={"If-Match": "*"})
        assert r.status_code == 200 and r.json()["_managedidentityid_value"] == MI_ID
        # unbind with DELETE …/$ref (OData)
        assert c.delete(f"pluginassemblies({aid})/managedidentityid/$ref").status_code == 204
        assert emulator.rows("pluginassembly")[0]["managedidentityid"] is None
        r = c.patch(f"pluginassemblies({aid})", json={"managedidentityid@odata.bind": f"/managedidentities({APP})"},
                    headers={"If-Match": "*"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "0x80040217"


@pytest.mark.interop
def test_signed_check_agrees_with_osslsigncode(dv, tmp_path):
    """The emulator's presence check against osslsigncode's own view (signed / unsigned / signature removed)."""
    from ppmi_build.emulator.dataverse.artifacts import pe_is_signed

    removed = tmp_path / "removed.dll"
    assert run_tool("osslsigncode", "remove-signature", "-in", dv.asm_v1, "-out", removed).returncode == 0
    for path, signed in ((dv.asm_v1, True), (dv.asm_v1_unsigned, False), (removed, False)):
        res = run_tool("osslsigncode", "verify", "-in", path)
        has_sig = "No signature found" not in (res.stdout + res.stderr)
        assert has_sig is signed
        assert pe_is_signed(path.read_bytes()) is signed


def test_public_key_token_required_and_16mb_limit(emulator, dv, plain_dll):
    with http(emulator) as c:
        r = c.post("pluginassemblies", json=assembly_body(dv, plain_dll, name="Contoso.Plain", publickeytoken=None))
        assert r.status_code == 400 and r.json()["error"]["message"] == "Public assembly must have public key token."
        big = base64.b64encode(b"\0" * (16 * 1024 * 1024 + 1)).decode()
        r = c.post("pluginpackages", json={"uniquename": "Big", "version": "1.0.0", "content": big})
        assert r.status_code == 400 and "16 MB" in r.json()["error"]["message"]
    assert emulator.rows("pluginassembly") == [] and emulator.rows("pluginpackage") == []


def test_package_upload_creates_assemblies_and_types(emulator, dv):
    with http(emulator, Prefer="return=representation", **{"MSCRM.SolutionUniqueName": "ContosoPlugins"}) as c:
        r = c.post("pluginpackages", json={"name": "Contoso.Pkg", "uniquename": "Contoso.Pkg", "version": "1.0.0",
                                           "content": b64(dv.pkg_v1)})
        assert r.status_code == 201
        pid = r.json()["pluginpackageid"]
        rows = c.get("pluginassemblies", params={"$filter": f"_packageid_value eq {pid}",
                                                 "$select": "name,version,publickeytoken"}).json()["value"]
    # only the assembly with IPlugin classes is registered ([BUILD]); Contoso.Pkg.Common has none
    assert [(r["name"], r["version"], r["publickeytoken"]) for r in rows] == [("Contoso.Pkg.Plugins", "1.0.0.0",
                                                                                None)]
    types = sorted(t["typename"] for t in emulator.rows("plugintype"))
    assert types == [f"Contoso.Pkg.Plugins.{n}" for n in ("AccountPlugin", "ContactPlugin")]
    assert emulator.rows("solutioncomponent") == [{"solutionuniquename": "ContosoPlugins",
                                                   "objecttypecode": "pluginpackage", "objectid": pid}]

    type_ids = {t["typename"]: t["plugintypeid"] for t in emulator.rows("plugintype")}
    asm_id = rows[0]["pluginassemblyid"]
    with http(emulator) as c:
        # content update keeps assembly and type ids (field spike, domain-spec §4.2)
        r = c.patch(f"pluginpackages({pid})", json={"content": b64(dv.pkg_v1_changed)}, headers={"If-Match": "*"})
        assert r.status_code == 204
        # version / uniquename changes are refused ([BUILD]) and change nothing
        r = c.patch(f"pluginpackages({pid})", json={"version": "1.0.1", "content": b64(dv.pkg_v2)})
        assert r.status_code == 400 and "version of the plug-in package cannot be changed" in r.text
        r = c.patch(f"pluginpackages({pid})", json={"uniquename": "Other"})
        assert r.status_code == 400
        # content of an assembly of a package cannot be patched or deleted
        r = c.patch(f"pluginassemblies({asm_id})", json={"content": b64(dv.asm_v1)})
        assert r.status_code == 400 and "part of plugin package" in r.text
        r = c.delete(f"pluginassemblies({asm_id})")
        assert r.status_code == 400 and "Unable to delete plug-in assembly as it is part of plugin package" in r.text
    asm = emulator.rows("pluginassembly")
    assert [(a["pluginassemblyid"], a["version"]) for a in asm] == [(asm_id, "1.0.1.0")]
    assert {t["typename"]: t["plugintypeid"] for t in emulator.rows("plugintype")} == type_ids
    pkg = emulator.rows("pluginpackage")[0]
    assert (pkg["version"], pkg["uniquename"]) == ("1.0.0", "Contoso.Pkg")
    assert base64.b64decode(pkg["content"]) == dv.pkg_v1_changed.read_bytes()
    with http(emulator) as c:
        assert c.delete(f"pluginpackages({pid})").status_code == 204
    assert emulator.rows("pluginassembly") == [] and emulator.rows("plugintype") == []


def test_bind_requires_signed_package(emulator, dv):
    with http(emulator, Prefer="return=representation") as c:
        pid = c.post("pluginpackages", json={"uniquename": "Contoso.Pkg", "version": "1.0.0",
                                             "content": b64(dv.pkg_v1_unsigned)}).json()["pluginpackageid"]
        c.post("managedidentities", json={"managedidentityid": MI_ID, "applicationid": APP}).raise_for_status()
        bind = {"managedidentityid@odata.bind": f"/managedidentities({MI_ID})"}
        r = c.patch(f"pluginpackages({pid})", json=bind)
        assert r.status_code == 400 and r.json()["error"]["code"] == "0x80040216"
        c.patch(f"pluginpackages({pid})", json={"content": b64(dv.pkg_v1)}).raise_for_status()
        assert c.patch(f"pluginpackages({pid})", json=bind).status_code == 200


def test_bearer_token_required(emulator):
    url = emulator.api_url + "/WhoAmI"
    assert httpx.get(url).status_code == 401
    r = httpx.get(url, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and "invalid_token" in r.headers["WWW-Authenticate"] and r.content == b""
    r = httpx.get(url, headers={"Authorization": f"Bearer {emulator.token}"})
    assert r.status_code == 200 and set(r.json()) >= {"UserId", "BusinessUnitId", "OrganizationId"}
    assert httpx.get(emulator.url + "/_emulator/requests").status_code == 200  # control surface: no token


def test_fault_control_surface(emulator):
    url = emulator.url
    auth = {"Authorization": f"Bearer {emulator.token}"}
    r = httpx.post(url + "/_emulator/faults", json={"method": "GET", "path_contains": "WhoAmI", "status": 429,
                                                    "retry_after": 2, "times": 2})
    assert r.status_code == 201
    assert httpx.post(url + "/_emulator/faults", json={"bogus": 1}).status_code == 400
    for _ in range(2):
        r = httpx.get(emulator.api_url + "/WhoAmI", headers=auth)
        assert r.status_code == 429 and r.headers["Retry-After"] == "2"
        assert r.json()["error"]["code"] == "0x80072322"
    assert httpx.get(emulator.api_url + "/WhoAmI", headers=auth).status_code == 200
    httpx.post(url + "/_emulator/faults", json={"method": "*", "path_contains": "WhoAmI", "status": 503, "times": 5})
    assert httpx.delete(url + "/_emulator/faults").status_code == 204
    assert httpx.get(emulator.api_url + "/WhoAmI", headers=auth).status_code == 200
    # drop: the connection closes without an answer
    httpx.post(url + "/_emulator/faults", json={"path_contains": "WhoAmI", "drop": True})
    with pytest.raises(httpx.TransportError):
        httpx.get(emulator.api_url + "/WhoAmI", headers=auth)
    # delay
    httpx.post(url + "/_emulator/faults", json={"path_contains": "WhoAmI", "delay_s": 0.3})
    t0 = time.monotonic()
    assert httpx.get(emulator.api_url + "/WhoAmI", headers=auth).status_code == 200
    assert time.monotonic() - t0 >= 0.3
    log = httpx.get(url + "/_emulator/requests").json()
    assert [(x["method"], x["path"], x["status"]) for x in log] == [("GET", "/api/data/v9.2/WhoAmI", s) for s in
                                                                    (429, 429, 200, 200, 0, 200)]
    assert httpx.post(url + "/_emulator/reset").status_code == 204
    assert httpx.get(url + "/_emulator/requests").json() == []


def test_entra_routing_contract(emulator, monkeypatch):
    """Graph (/v1.0/) and ARM (/subscriptions/) paths go to their service's handler with (state, method, path, query,
    headers, body) behind the same token check; None from it means 404."""
    calls = []

    class FakeEntra:
        @staticmethod
        def handle(state, method, path, query, headers, body):
            calls.append((state is emulator.state, method, path, query, headers.get("X-Test"), body))
            if path.endswith("/none"):
                return None
            return 201, {"Content-Type": "application/json"}, json.dumps({"ok": True}).encode()

    def to_fake(req, m):
        return FakeEntra.handle(req.state, req.method, req.path, dict(req.query), req.headers, req.body)

    monkeypatch.setattr(emulator.server, "services", tuple(
        s if s.name == "dataverse" else dataclasses.replace(s, routes=(Route(re.compile(".*"), to_fake),))
        for s in emulator.server.services))
    auth = {"Authorization": f"Bearer {emulator.token}", "X-Test": "1"}
    r = httpx.post(emulator.url + "/v1.0/applications/abc/federatedIdentityCredentials", params={"a": "b c"},
                   content=b'{"x":1}', headers=auth)
    assert r.status_code == 201 and r.json() == {"ok": True}
    assert calls[0] == (True, "POST", "/v1.0/applications/abc/federatedIdentityCredentials", {"a": "b c"}, "1",
                        b'{"x":1}')
    assert httpx.get(emulator.url + "/subscriptions/s/none", headers=auth).status_code == 404
    assert httpx.get(emulator.url + "/v1.0/applications", headers={}).status_code == 401
    assert len(calls) == 2


def test_file_database_survives_restart(tmp_path):
    from ppmi_build.emulator import start

    db = tmp_path / "state.db"
    with start(db=str(db)) as emu, http(emu) as c:
        c.post("managedidentities", json={"managedidentityid": MI_ID, "applicationid": APP}).raise_for_status()
    with start(db=str(db)) as emu:
        assert [r["managedidentityid"] for r in emu.rows("managedidentity")] == [MI_ID]


def test_module_entry_point_serves(tmp_path):
    """``python -m ppmi_build.emulator --port 0`` prints its URL and answers with the given token."""
    proc = subprocess.Popen([sys.executable, "-m", "ppmi_build.emulator", "--port", "0", "--token", "t0k"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = line.split(" on ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        r = httpx.get(url + "/api/data/v9.2/WhoAmI", headers={"Authorization": "Bearer t0k"}, timeout=10)
        assert r.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
