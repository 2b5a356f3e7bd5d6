"""The Web API client: OData headers, typed errors, retries (measured), idempotent creates, URL policy, auth providers.

Server behaviour comes from the emulator (real HTTP on loopback) or, for header inspection and edge cases,
httpx.MockTransport. After every fault the emulator database is checked for exactly the expected rows.
"""

# ruff: noqa: F811  (pytest fixtures imported from tests.emulator_fixture / tests.dataverse_artifacts)
from __future__ import annotations

import base64
import json
import logging
import sys
import time
import uuid

import httpx
import pytest

from ppmi_build.dataverse.client import DataverseClient, encode_body, odata_literal
from ppmi_build.errors import AuthError, ConfigError, DataverseAuthError, DataverseError
from ppmi_build.http.client import check_url
from ppmi_build.http.retry import RetryPolicy
from ppmi_build.http.tokens import (
    AzureIdentityToken,
    StaticToken,
    azure_credential,
    detect_method,
    github_oidc_assertion,
    scope_for,
    token_provider,
)
from tests.emulator_fixture import emulator  # noqa: F401

APP = "9f3d07ca-381e-43fc-8bef-76dd03b460d6"
TENANT = "7f2c1900-9fd4-4b89-91d3-79a649996f0a"
FAST = RetryPolicy(max_retries=3, backoff_base=0.01, backoff_max=0.05, timeout=10)


def client_for(emu, *, token=None, retry=FAST, **kw) -> DataverseClient:
    return DataverseClient(emu.url, StaticToken(token or emu.token), retry=retry, **kw)


def mi_body(mid: str) -> dict:
    return {"managedidentityid": mid, "applicationid": APP, "tenantid": TENANT, "credentialsource": 2,
            "subjectscope": 1, "version": 2}


def writes(emu) -> list[tuple[str, str, int]]:
    return [(r["method"], r["path"], r["status"]) for r in emu.requests() if r["method"] != "GET"]


# --- headers and errors ------------------------------------------------------------------------------------------


def test_odata_headers_prefer_solution_and_if_match():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            return httpx.Response(201, json={"managedidentityid": "x"})
        if request.method == "PATCH":
            return httpx.Response(204)
        return httpx.Response(200, json={"value": []})

    with DataverseClient("https://contoso.crm.dynamics.com", StaticToken("tok"), retry=FAST, solution="Sol",
                         transport=httpx.MockTransport(handler)) as c:
        assert c.api_url == "https://contoso.crm.dynamics.com/api/data/v9.2"
        c.query("pluginpackages", select=["uniquename"], filter="uniquename eq " + odata_literal("a'b"))
        c.create("managedidentities", mi_body("x"), id_column="managedidentityid", id="x", select=["version"])
        c.update("managedidentities", "x", {"version": 2})
    get, post, patch = seen
    for r in seen:
        assert r.headers["OData-Version"] == "4.0" and r.headers["OData-MaxVersion"] == "4.0"
        assert r.headers["Accept"] == "application/json" and r.headers["Authorization"] == "Bearer tok"
    assert get.url.params["$filter"] == "uniquename eq 'a''b'" and get.url.params["$select"] == "uniquename"
    assert get.headers["If-None-Match"] == "null"
    assert post.headers["Prefer"] == "return=representation" and post.headers["MSCRM.SolutionUniqueName"] == "Sol"
    assert post.headers["Content-Type"].startswith("application/json") and json.loads(post.content)["version"] == 2
    assert patch.headers["If-Match"] == "*" and "Prefer" not in patch.headers


def test_error_body_becomes_typed_error_with_hint(emulator):
    with client_for(emulator) as c:
        with pytest.raises(DataverseError) as ei:
            c.create("managedidentities", {"managedidentityid": str(uuid.uuid4()), "colour": 1},
                     id_column="managedidentityid", id="x")
    e = ei.value
    assert e.status == 400 and e.code == "0x80060888" and e.exit_code == 3
    assert "colour" in e.message and e.hint
    # 0x80040216 carries the "not signed" hint
    resp = httpx.Response(400, json={"error": {"code": "0x80040216", "message": "Plugin assembly must be signed "
                                                                                "with valid certificate"}},
                          request=httpx.Request("PATCH", "https://x/api/data/v9.2/pluginassemblies(1)"))
    with DataverseClient("https://x", StaticToken("t"), retry=FAST,
                         transport=httpx.MockTransport(lambda r: resp)) as c:
        with pytest.raises(DataverseError) as ei:
            c.update("pluginassemblies", "1", {"managedidentityid@odata.bind": "/managedidentities(2)"})
    assert ei.value.code == "0x80040216" and "not signed" in ei.value.hint and "ppmi-build sign" in str(ei.value)


# --- retries -------------------------------------------------------------------------------------------------------


def test_429_retry_after_is_waited_for(emulator):
    """Retry-After: 2 from the emulator is honoured: the client waits exactly 2 s (through its injected sleep, so the
    test does not sleep) before the one retry, and the emulator's request log shows the 429 then the create."""
    emulator.add_fault(method="POST", path_contains="managedidentities", status=429, retry_after=2)
    mid = str(uuid.uuid4())
    waits: list[float] = []
    with client_for(emulator, retry=RetryPolicy(max_retries=3, backoff_base=0.01), sleep=waits.append) as c:
        row = c.create("managedidentities", mi_body(mid), id_column="managedidentityid", id=mid, select=["version"])
    assert row["managedidentityid"] == mid and row["version"] == 2
    assert waits == [2.0]
    posts = [r for r in emulator.requests() if r["method"] == "POST"]
    assert [p["status"] for p in posts] == [429, 201]
    assert len(emulator.rows("managedidentity")) == 1


def test_503_twice_then_success(emulator):
    emulator.add_fault(method="POST", path_contains="managedidentities", status=503, times=2)
    notes: list[str] = []
    mid = str(uuid.uuid4())
    with client_for(emulator, on_retry=notes.append) as c:
        c.create("managedidentities", mi_body(mid), id_column="managedidentityid", id=mid)
        assert c.retries == 2
    assert writes(emulator) == [("POST", "/api/data/v9.2/managedidentities", s) for s in (503, 503, 201)]
    assert [r["managedidentityid"] for r in emulator.rows("managedidentity")] == [mid]
    assert len(notes) == 2 and "HTTP 503" in notes[0]


def test_dropped_connection_mid_upload(emulator):
    """The server reads half of a 3 MB body and resets the connection; the retry succeeds, one row exists."""
    emulator.add_fault(method="POST", path_contains="managedidentities", drop=True)
    mid = str(uuid.uuid4())
    big = json.dumps({**mi_body(mid), "name": "big"}).encode()
    # a large body (3 MB of whitespace is valid JSON) so the reset happens while uploading
    big_body = big[:-1] + b" " * (3 * 1024 * 1024) + b"}"
    with client_for(emulator) as c:
        row = c.create("managedidentities", big_body, id_column="managedidentityid", id=mid)
    assert row["managedidentityid"] == mid
    assert [(r["method"], r["status"]) for r in emulator.requests() if r["method"] == "POST"] == [("POST", 0),
                                                                                              ("POST", 201)]
    assert [r["managedidentityid"] for r in emulator.rows("managedidentity")] == [mid]


def test_create_that_was_saved_before_the_connection_dropped_is_not_duplicated(emulator):
    emulator.add_fault(method="POST", path_contains="managedidentities", drop_after_commit=True)
    mid = str(uuid.uuid4())
    with client_for(emulator) as c:
        row = c.create("managedidentities", mi_body(mid), id_column="managedidentityid", id=mid, select=["version"])
    assert row["managedidentityid"] == mid and row["version"] == 2
    posts = [(r["status"], r["fault"]) for r in emulator.requests() if r["method"] == "POST"]
    assert posts == [(201, "drop_after_commit"), (412, None)]
    assert [r["managedidentityid"] for r in emulator.rows("managedidentity")] == [mid]


def test_timeout_is_retried_without_duplicate(emulator):
    emulator.add_fault(method="POST", path_contains="managedidentities", delay_s=0.8)
    mid = str(uuid.uuid4())
    retry = RetryPolicy(max_retries=2, backoff_base=0.01, timeout=0.3)
    with client_for(emulator, retry=retry) as c:
        c.create("managedidentities", mi_body(mid), id_column="managedidentityid", id=mid)
    time.sleep(0.8)  # let the delayed first attempt finish on the server
    assert [r["managedidentityid"] for r in emulator.rows("managedidentity")] == [mid]


def test_bad_token_401_is_clear_and_not_retried(emulator):
    with client_for(emulator, token="not-the-token") as c:
        with pytest.raises(DataverseAuthError) as ei:
            c.query("pluginpackages")
    assert ei.value.status == 401 and ei.value.exit_code == 3
    assert "access token was refused" in str(ei.value)
    assert isinstance(ei.value, AuthError)
    assert [r["status"] for r in emulator.requests()] == [401]


def test_persistent_503_fails_after_bounded_retries(emulator):
    emulator.add_fault(method="*", path_contains="managedidentities", status=503, times=100)
    mid = str(uuid.uuid4())
    with client_for(emulator) as c:
        with pytest.raises(DataverseError) as ei:
            c.create("managedidentities", mi_body(mid), id_column="managedidentityid", id=mid)
    assert ei.value.status == 503 and ei.value.exit_code == 3 and "after 4 attempts" in str(ei.value)
    assert len(emulator.requests()) == FAST.max_retries + 1
    assert emulator.rows("managedidentity") == []


def test_retry_after_http_date_and_cap():
    calls = []
    waits: list[float] = []

    def handler(request):
        calls.append(request)
        if len(calls) == 1:
            date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
            return httpx.Response(429, headers={"Retry-After": date})
        if len(calls) == 2:
            return httpx.Response(429, headers={"Retry-After": "100000"}, json={"error": {"code": "0x80072322",
                                                                                          "message": "limit"}})
        return httpx.Response(200, json={"value": []})

    with DataverseClient("https://x", StaticToken("t"), retry=FAST, sleep=waits.append,
                         transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(DataverseError) as ei:
            c.query("pluginpackages")
    assert 28 <= waits[0] <= 30.5
    assert len(calls) == 2 and "0x80072322" in str(ei.value) and "too many requests" in str(ei.value)


def test_backoff_is_bounded_with_jitter():
    p = RetryPolicy(backoff_base=1.0, backoff_max=8.0)
    for attempt, full in ((0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (10, 8.0)):
        values = [p.backoff(attempt) for _ in range(200)]
        assert all(full / 2 <= v <= full for v in values)
        assert max(values) - min(values) > full / 10  # jittered


def test_policy_from_env():
    p = RetryPolicy.from_env({"PPMI_HTTP_RETRIES": "2", "PPMI_HTTP_BACKOFF": "0.5", "PPMI_HTTP_TIMEOUT": "9"})
    assert (p.max_retries, p.backoff_base, p.timeout) == (2, 0.5, 9.0)
    with pytest.raises(ConfigError, match="PPMI_HTTP_RETRIES"):
        RetryPolicy.from_env({"PPMI_HTTP_RETRIES": "many"})


# --- URL policy and body encoding ------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:5", "https://a.b"])
def test_allowed_urls(url):
    assert check_url(url + "/") == url


@pytest.mark.parametrize("url", ["http://contoso.crm.dynamics.com", "http://10.0.0.1", "ftp://x", "contoso"])
def test_refused_urls(url):
    with pytest.raises(ConfigError):
        DataverseClient(url, StaticToken("t"))


def test_existing_api_path_kept():
    c = DataverseClient("https://org.crm.dynamics.com/api/data/v9.0/", StaticToken("t"))
    assert c.api_url == "https://org.crm.dynamics.com/api/data/v9.0" and c.url == "https://org.crm.dynamics.com"


@pytest.mark.parametrize("size", [0, 1, 2, 3, 3 * 1024 * 1024 - 1, 3 * 1024 * 1024 + 2, 7 * 1024 * 1024 + 1])
def test_encode_body_matches_stdlib_base64(size):
    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    body = encode_body({"name": "x", "version": "1"}, content=data)
    raw = bytes(body)
    assert len(raw) == len(body)  # the Content-Length sent in advance
    assert json.loads(raw) == {"name": "x", "version": "1", "content": base64.b64encode(data).decode()}
    assert json.loads(bytes(encode_body({}, content=b"ab"))) == {"content": "YWI="}


# --- auth ---------------------------------------------------------------------------------------------------------


def test_scope_and_static_token():
    assert scope_for("https://contoso.crm4.dynamics.com/") == "https://contoso.crm4.dynamics.com/.default"
    p = token_provider("https://contoso.crm.dynamics.com", environ={"PPMI_ACCESS_TOKEN": "Bearer abc"})
    assert p.token() == "abc" and "abc" not in repr(p) and "abc" not in p.description
    with pytest.raises(ConfigError):
        StaticToken("  ")


def test_no_credentials_without_azure_identity(monkeypatch):
    monkeypatch.setitem(sys.modules, "azure.identity", None)  # makes `import azure.identity` fail
    with pytest.raises(ConfigError, match="PPMI_ACCESS_TOKEN.*azure-identity"):
        token_provider("https://contoso.crm.dynamics.com", environ={})


def test_detect_method():
    assert detect_method({"PPMI_ACCESS_TOKEN": "x"}) == "static"
    gh = {"ACTIONS_ID_TOKEN_REQUEST_URL": "https://gh", "AZURE_CLIENT_ID": APP, "AZURE_TENANT_ID": TENANT}
    assert detect_method(gh) == "github"
    assert detect_method({"AZURESUBSCRIPTION_SERVICE_CONNECTION_ID": "s", "SYSTEM_ACCESSTOKEN": "t"}) == \
        "azure-pipelines"
    assert detect_method({}) == "default"


def test_azure_identity_credentials_are_built():
    pytest.importorskip("azure.identity")
    import azure.identity as ai

    env = {"AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_ID": APP, "AZURE_CLIENT_SECRET": "s3cret",
           "AZURE_FEDERATED_TOKEN_FILE": "/tmp/none", "ACTIONS_ID_TOKEN_REQUEST_URL": "https://gh/x?a=1",
           "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "rt", "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID": "sc",
           "AZURESUBSCRIPTION_CLIENT_ID": APP, "AZURESUBSCRIPTION_TENANT_ID": TENANT, "SYSTEM_ACCESSTOKEN": "sat"}
    for method, cls in (("client-secret", ai.ClientSecretCredential), ("azure-cli", ai.AzureCliCredential),
                        ("workload-identity", ai.WorkloadIdentityCredential),
                        ("github", ai.ClientAssertionCredential), ("azure-pipelines", ai.AzurePipelinesCredential),
                        ("default", ai.DefaultAzureCredential)):
        cred, label = azure_credential(method, env)
        assert isinstance(cred, cls), method
    p = token_provider("https://contoso.crm.dynamics.com", method="client-secret", environ=env)
    assert isinstance(p, AzureIdentityToken) and p.scope == "https://contoso.crm.dynamics.com/.default"
    with pytest.raises(ConfigError, match="AZURE_CLIENT_SECRET"):
        azure_credential("client-secret", {"AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_ID": APP})
    with pytest.raises(ConfigError, match="PPMI_AUTH"):
        token_provider("https://contoso.crm.dynamics.com", method="magic", environ=env)


def test_azure_identity_token_is_cached_and_errors_are_clean():
    class Tok:
        def __init__(self, token, expires_on):
            self.token, self.expires_on = token, expires_on

    class Cred:
        def __init__(self):
            self.scopes: list[str] = []

        def get_token(self, scope):
            self.scopes.append(scope)
            return Tok(f"t{len(self.scopes)}", time.time() + (3600 if len(self.scopes) == 1 else 10))

    cred = Cred()
    p = token_provider("https://org.crm.dynamics.com", credential=cred)
    assert [p.token(), p.token()] == ["t1", "t1"]
    assert cred.scopes == ["https://org.crm.dynamics.com/.default"]
    p._cached = ("t1", time.time() + 10)  # near expiry: refreshed
    assert p.token() == "t2"

    class Broken:
        def get_token(self, scope):
            raise RuntimeError("AADSTS7000215: Invalid client secret provided. Bearer abc.def")

    with pytest.raises(AuthError) as ei:
        AzureIdentityToken(Broken(), "https://x/.default", "ClientSecretCredential").token()
    assert "AADSTS7000215" in str(ei.value) and "abc.def" not in str(ei.value)


def test_github_oidc_assertion_request():
    seen = {}

    def fake_get(url, headers, timeout):
        seen.update(url=url, headers=headers)
        return httpx.Response(200, json={"value": "jwt"}, request=httpx.Request("GET", url))

    f = github_oidc_assertion({"ACTIONS_ID_TOKEN_REQUEST_URL": "https://gh/token?x=1",
                               "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "req"}, http_get=fake_get)
    assert f() == "jwt"
    assert seen["url"] == "https://gh/token?x=1&audience=api://AzureADTokenExchange"
    assert seen["headers"] == {"Authorization": "bearer req"}


def test_token_never_in_errors_or_logs(emulator, caplog):
    """A recognisable token value: absent from exception text and every log record, through retries and a 401."""
    secret = "tok-RECOGNISABLE-7f3a9c"
    caplog.set_level(logging.DEBUG)
    emulator.add_fault(method="GET", path_contains="pluginpackages", status=503, times=2)
    with client_for(emulator, token=secret) as c:
        with pytest.raises(DataverseAuthError) as ei:
            c.query("pluginpackages")
    assert secret not in str(ei.value) and secret not in repr(ei.value.__dict__)
    assert secret not in caplog.text
    assert [r["status"] for r in emulator.requests()] == [503, 503, 401]


def test_unavailable_credentials_are_a_config_error_and_refusals_an_auth_error():
    """azure-identity: nothing configured (every credential of a chain unavailable, or one unavailable credential)
    -> ConfigError, exit 2, one line naming PPMI_ACCESS_TOKEN / PPMI_AUTH; a configured credential that is refused
    -> AuthError, exit 3."""
    pytest.importorskip("azure.identity")
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import ChainedTokenCredential, CredentialUnavailableError

    class Unavailable:
        def get_token(self, *scopes, **kw):
            raise CredentialUnavailableError(message="not configured")

    class Refused:
        def get_token(self, *scopes, **kw):
            raise ClientAuthenticationError(message="AADSTS7000215: Invalid client secret provided.")

    scope = "https://org.crm.dynamics.com/.default"
    for cred in (ChainedTokenCredential(Unavailable(), Unavailable()), Unavailable()):
        with pytest.raises(ConfigError) as ei:
            AzureIdentityToken(cred, scope, "DefaultAzureCredential").token()
        msg = str(ei.value)
        assert ei.value.exit_code == 2 and "\n" not in msg and msg.startswith("no Dataverse credentials")
        assert "PPMI_ACCESS_TOKEN" in msg and "PPMI_AUTH" in msg
    for cred in (ChainedTokenCredential(Unavailable(), Refused()), Refused()):
        with pytest.raises(AuthError) as ei:
            AzureIdentityToken(cred, scope, "ClientSecretCredential").token()
        assert ei.value.exit_code == 3 and "AADSTS7000215" in str(ei.value)
    with pytest.raises(ConfigError, match="^no Graph credentials.*PPMI_GRAPH_TOKEN"):
        AzureIdentityToken(Unavailable(), "https://graph.microsoft.com/.default", "AzureCliCredential").token()


def test_quiet_azure_logging():
    import logging

    from ppmi_build.cli._logging import configure_logging

    undo = configure_logging(0)
    try:  # silent: not even ERROR (MSAL logs tracebacks at ERROR) or CRITICAL gets through
        for n in ("azure.identity", "azure.core", "msal", "msal.oauth2cli.oauth2"):
            assert not logging.getLogger(n).isEnabledFor(logging.CRITICAL), n
    finally:
        undo()
    assert logging.getLogger("azure.identity").level == logging.NOTSET
    undo = configure_logging(1)
    try:
        assert logging.getLogger("azure.identity").level == logging.NOTSET
    finally:
        undo()


def test_one_attempt_is_singular(emulator):
    emulator.add_fault(method="*", path_contains="pluginpackages", status=503, times=5)
    with client_for(emulator, retry=RetryPolicy(max_retries=0, backoff_base=0.01, timeout=10)) as c:
        with pytest.raises(DataverseError) as ei:
            c.query("pluginpackages")
    assert "(after 1 attempt)" in str(ei.value) and "attempts" not in str(ei.value)
