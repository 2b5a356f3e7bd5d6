"""Entra FIC clients (ppmi_build.entra) and the Entra part of the emulator (emulator/entra_api.py).

Expected values come from the sources, not from our code:
* cap of 20 FICs per app/UAMI, name rule (3-120, alphanumeric/-/_, first alphanumeric), 600-char limits,
  one audience, no wildcards: Entra "federated identity credential considerations" (domain-spec §1.7);
* ARM name pattern ``^[a-zA-Z0-9]{1}[a-zA-Z0-9-_]{2,119}$`` and the PUT/GET/DELETE shapes: ARM
  Microsoft.ManagedIdentity 2023-01-31 REST reference;
* Graph 201 body ``{id, name, issuer, subject, description, audiences}``: Graph v1.0 "Create
  federatedIdentityCredential" example;
* ARM 409 ``ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity``: Azure/bicep-registry-modules#1447;
* Graph duplicate (issuer, subject) 400 ``InvalidFederatedIdentityCredentialValue``: Azure/azure-workload-identity#434.
"""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from ppmi_build import entra
from ppmi_build.entra import ArmFicClient, GraphFicClient, ensure_fic
from ppmi_build.errors import AuthError, ConfigError, PlanRefused, ServiceError
from ppmi_build.http.retry import RetryPolicy
from ppmi_build.http.tokens import default_token_getter, scope_for
from ppmi_build.identity.fic_records import Fic, match_fic, validate_fic_name
from tests.emulator_fixture import emulator  # noqa: F401
from tests.entra_bridge import TOKEN, call, new_state, transport

APP = "bcd7c908-1c4d-4d48-93ee-ff38349a75c8"  # Graph docs example object id
SUB = "00000000-0000-0000-0000-000000000000"
UAMI = f"/subscriptions/{SUB}/resourceGroups/MyRg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/MyMI"
ISSUER = "https://login.microsoftonline.com/3d1e2be9-a10a-4a0c-8380-7ce190f98ed9/v2.0"
AUD = "api://AzureADTokenExchange"
NO_SLEEP = RetryPolicy(max_retries=3, backoff_base=0, sleep=lambda s: None)


def fic(n: int | str, subject: str | None = None, **kw) -> Fic:
    return Fic(name=f"fic-{n}", issuer=kw.get("issuer", ISSUER), subject=subject or f"/eid1/c/pub/subject-{n}",
               audiences=(kw.get("audience", AUD),), description=kw.get("description", ""))


@pytest.fixture
def state():
    return new_state()


def graph_client(state, faults=None, retry=NO_SLEEP) -> GraphFicClient:
    http = httpx.Client(transport=transport(state, faults), base_url="http://localhost")
    return GraphFicClient("http://localhost", APP, lambda scope: TOKEN, client=http, retry=retry)


def arm_client(state, faults=None, retry=NO_SLEEP) -> ArmFicClient:
    http = httpx.Client(transport=transport(state, faults), base_url="http://localhost")
    return ArmFicClient("http://localhost", UAMI, lambda scope: TOKEN, client=http, retry=retry)


def writes(state) -> list[tuple[str, str, int]]:
    return [r for r in state.log if r[0] != "GET"]


# --- emulator: Graph -----------------------------------------------------------------------------------


def test_graph_create_list_delete_shapes(state):
    body = {"name": "testing02", "issuer": ISSUER, "subject": "a7d388c3-5e3f-4959-ac7d-786b3383006a",
            "audiences": [AUD]}
    path = f"/v1.0/applications/{APP}/federatedIdentityCredentials"
    status, headers, raw = call(state, "POST", path, json.dumps(body).encode())
    assert status == 201
    created = json.loads(raw)
    # Graph docs example response keys
    assert {"id", "name", "issuer", "subject", "description", "audiences"} <= set(created)
    assert created["description"] is None and created["audiences"] == [AUD]
    status, _, raw = call(state, "GET", path)
    assert status == 200 and [v["name"] for v in json.loads(raw)["value"]] == ["testing02"]
    # alternate key (name='...') and id addressing
    assert call(state, "GET", f"{path}(name='testing02')")[0] == 200
    assert call(state, "DELETE", f"{path}/{created['id']}")[0] == 204
    assert call(state, "DELETE", f"{path}/{created['id']}")[0] == 404
    assert json.loads(call(state, "GET", path)[2])["value"] == []


def test_graph_rules(state):
    path = f"/v1.0/applications/{APP}/federatedIdentityCredentials"

    def post(**kw):
        body = {"name": "ok-name", "issuer": ISSUER, "subject": "s", "audiences": [AUD]}
        body.update(kw)
        return call(state, "POST", path, json.dumps(body).encode())

    for bad in ("ab", "-abc", "a" * 121, "has space", "dots.no"):
        status, _, raw = post(name=bad)
        assert status == 400, bad
    assert post(name="a" * 120, subject="s-120")[0] == 201
    assert post(name="abc", subject="x" * 601)[0] == 400
    assert post(name="abc", audiences=[AUD, "api://other"])[0] == 400
    assert post(name="abc", subject="repo:*")[0] == 400
    assert post(name="abc", issuer=" " + ISSUER)[0] == 400
    assert post(name="abc", subject="s1")[0] == 201
    # (issuer, subject) unique per app, compared case-sensitively
    status, _, raw = post(name="abd", subject="s1")
    assert status == 400 and json.loads(raw)["error"]["code"] == "InvalidFederatedIdentityCredentialValue"
    assert post(name="abe", subject="S1")[0] == 201
    subjects = [v["subject"] for v in json.loads(call(state, "GET", path)[2])["value"]]
    assert "s1" in subjects and "S1" in subjects  # stored with case kept
    # name is immutable, unique
    assert post(name="ABC", subject="s2")[0] == 409
    fid = json.loads(call(state, "GET", f"{path}(name='abc')")[2])["id"]
    assert call(state, "PATCH", f"{path}/{fid}", json.dumps({"name": "renamed"}).encode())[0] == 400
    # bad token, bad object id
    assert call(state, "GET", path, token="wrong")[0] == 401
    assert call(state, "GET", "/v1.0/applications/not-a-guid/federatedIdentityCredentials")[0] == 400


def test_graph_cap_is_20(state):
    path = f"/v1.0/applications/{APP}/federatedIdentityCredentials"
    for i in range(20):
        body = {"name": f"fic-{i}", "issuer": ISSUER, "subject": f"s{i}", "audiences": [AUD]}
        assert call(state, "POST", path, json.dumps(body).encode())[0] == 201
    body = {"name": "fic-20", "issuer": ISSUER, "subject": "s20", "audiences": [AUD]}
    status, _, raw = call(state, "POST", path, json.dumps(body).encode())
    assert status == 400 and "20" in json.loads(raw)["error"]["message"]
    assert len(json.loads(call(state, "GET", path)[2])["value"]) == 20


# --- emulator: ARM -------------------------------------------------------------------------------------


def test_arm_put_get_delete_shapes(state):
    item = f"{UAMI}/federatedIdentityCredentials/fic-pwsh01"
    q = {"api-version": "2023-01-31"}
    body = {"properties": {"issuer": "https://kubernetes-oauth.azure.com",
                           "subject": "system:serviceaccount:ns:svcaccount", "audiences": [AUD]}}
    status, _, raw = call(state, "PUT", item, json.dumps(body).encode(), q)
    assert status == 201
    res = json.loads(raw)
    assert res["name"] == "fic-pwsh01"
    assert res["type"] == "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials"
    assert res["id"].endswith("/federatedIdentityCredentials/fic-pwsh01")
    assert res["properties"] == body["properties"]
    assert call(state, "PUT", item, json.dumps(body).encode(), q)[0] == 200  # update
    assert call(state, "GET", f"{UAMI}/federatedIdentityCredentials", query=q)[0] == 200
    assert call(state, "GET", f"{UAMI}/federatedIdentityCredentials")[0] == 400  # api-version required
    assert call(state, "DELETE", item, query=q)[0] == 200
    assert call(state, "DELETE", item, query=q)[0] == 204
    assert call(state, "PUT", f"{UAMI}/federatedIdentityCredentials/_bad", json.dumps(body).encode(), q)[0] == 400
    no_aud = {"properties": {"issuer": "https://x", "subject": "y"}}
    assert call(state, "PUT", item, json.dumps(no_aud).encode(), q)[0] == 400


def test_arm_concurrent_writes_to_one_uami_get_409(state):
    q = {"api-version": "2023-01-31"}
    results: list[tuple[int, bytes]] = []
    barrier = threading.Barrier(4)

    def put(i):
        body = {"properties": {"issuer": ISSUER, "subject": f"s{i}", "audiences": [AUD]}}
        barrier.wait()
        st, _, raw = call(state, "PUT", f"{UAMI}/federatedIdentityCredentials/fic-{i}", json.dumps(body).encode(), q)
        results.append((st, raw))

    threads = [threading.Thread(target=put, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(st for st, _ in results)
    assert codes.count(201) >= 1 and 409 in codes
    conflict = next(json.loads(raw) for st, raw in results if st == 409)
    assert conflict["error"]["code"] == "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity"


def test_arm_client_serialises_writes_and_retries_409(state):
    client = arm_client(state)
    errors: list[Exception] = []

    def create(i):
        try:
            client.create(fic(i))
        except Exception as e:  # pragma: no cover - asserted below
            errors.append(e)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(f.name for f in client.list()) == [f"fic-{i}" for i in range(5)]
    assert all(st != 409 for _, _, st in state.log)
    # another writer elsewhere: one 409 from the service is retried
    conflict = json.dumps({"error": {"code": entra.ARM_CONCURRENT_CODE, "message": "Too many"}}).encode()
    client2 = arm_client(state, faults=[("PUT", 409, {"Content-Type": "application/json"}, conflict)])
    created = client2.create(fic(9))
    assert created.name == "fic-9"
    assert [st for m, _, st in state.log if m == "PUT"][-2:] == [409, 201]


def test_arm_cap_and_duplicate(state):
    client = arm_client(state)
    for i in range(20):
        client.create(fic(i))
    with pytest.raises(ServiceError) as e:
        client.create(fic(20))
    assert e.value.status == 400
    with pytest.raises(ServiceError) as e:
        client.create(Fic("other-name", ISSUER, "/eid1/c/pub/subject-3", (AUD,)))
    assert "Issuer and subject combination already exists" in e.value.message


# --- client --------------------------------------------------------------------------------------------


def test_graph_client_roundtrip(state):
    client = graph_client(state)
    assert client.list() == []
    created = client.create(fic(1, description="ppmi-build: test"))
    assert created.id and created.name == "fic-1" and created.audience == AUD
    listed = client.list()
    assert listed == [created]
    assert client.delete(Fic("fic-1", ISSUER, "x", (AUD,)))  # looked up by name
    assert client.delete(created) is False
    assert client.list() == []


def test_graph_client_follows_next_link(state):
    page2 = {"value": [{"id": "2", "name": "b", "issuer": ISSUER, "subject": "s2", "audiences": [AUD]}]}
    page1 = {"value": [{"id": "1", "name": "a", "issuer": ISSUER, "subject": "s1", "audiences": [AUD]}],
             "@odata.nextLink": "http://localhost/v1.0/next-page"}

    def handler(request):
        return httpx.Response(200, json=page2 if "next-page" in str(request.url) else page1)

    client = GraphFicClient("http://localhost", APP, lambda s: TOKEN,
                            client=httpx.Client(transport=httpx.MockTransport(handler)), retry=NO_SLEEP)
    assert [f.name for f in client.list()] == ["a", "b"]


def test_ensure_is_idempotent_and_counts_cap_first(state):
    client = graph_client(state)
    r1 = ensure_fic(client, fic("x"))
    assert r1.status == "created"
    n_writes = len(writes(state))
    r2 = ensure_fic(client, fic("x"))
    assert r2.status == "unchanged" and len(writes(state)) == n_writes
    for i in range(19):
        client.create(fic(i, description="ppmi-build: old"))
    before = len(writes(state))
    with pytest.raises(PlanRefused) as e:
        ensure_fic(client, fic("new"))
    assert len(writes(state)) == before  # refused before any write
    msg = e.value.message
    assert "20" in msg and "fic-0" in msg and e.value.exit_code == 1
    # plan mode never writes
    client.delete(client.list()[0])
    before = len(writes(state))
    assert ensure_fic(client, fic("new"), apply=False).status == "planned"
    assert len(writes(state)) == before


def test_case_only_difference_is_reported_not_used(state):
    client = graph_client(state)
    wrong = Fic("fic-wrong-case", ISSUER, "/eid1/c/pub/t/ABC/h/AA11", (AUD,))
    client.create(wrong)
    desired = Fic("fic-right", ISSUER, "/eid1/c/pub/t/ABC/h/aa11", (AUD,))
    m = match_fic(client.list(), desired)
    assert m.exact is None and [f.name for f in m.case_only] == ["fic-wrong-case"]
    res = ensure_fic(client, desired)
    assert res.status == "created"
    assert any("only in letter case" in n and "subject" in n and "fic-wrong-case" in n for n in res.notes)
    assert {f.subject for f in client.list()} == {wrong.subject, desired.subject}


def test_name_taken_gets_suffix(state):
    client = graph_client(state)
    client.create(Fic("fic-a", ISSUER, "old-subject", (AUD,)))
    res = ensure_fic(client, Fic("fic-a", ISSUER, "new-subject", (AUD,)))
    assert res.status == "created" and res.fic.name == "fic-a-2"


def test_names_valid_per_entra_rules(pki):
    from ppmi_build.identity.fic import compute_fic

    env = "7efcc31a-c410-e20e-9b95-dd448cedf653"
    tenant = "738016bf-2f59-46ca-9660-357d1de3b865"
    names = set()
    for version in (0, 1, 2):
        for cert in (pki.leaf.cert, pki.self_signed.cert):
            values = compute_fic(cert, tenant_id=tenant, environment_id=env, version=version)
            want = entra.desired_fic(values, "ppmi-build: test")
            assert entra.NAME_RE.match(want.name) and 3 <= len(want.name) <= 120
            assert (want.issuer, want.subject, want.audience) == (values.issuer, values.subject, values.audience)
            names.add(want.name)
    assert len(names) == 6  # distinct per certificate and record version
    for bad in ("ab", "_abc", "a b c", "a" * 121, "ü-name", "dots.no"):
        with pytest.raises(ConfigError):
            validate_fic_name(bad)


def test_client_validates_before_sending(state):
    client = graph_client(state)
    with pytest.raises(ConfigError):
        client.create(Fic("x", ISSUER, "s", (AUD,)))
    with pytest.raises(ConfigError):
        client.create(Fic("valid-name", ISSUER, "s" * 601, (AUD,)))
    assert state.log == []


def test_retries_429_with_retry_after(state):
    waits: list[float] = []
    retry = RetryPolicy(max_retries=2, backoff_base=0, sleep=waits.append)
    client = graph_client(state, faults=[("GET", 429, {"Retry-After": "2"}, b"")], retry=retry)
    assert client.list() == []
    assert waits == [2.0]


def test_errors_are_one_line_without_token(state):
    secret = "s3cr3t-token-value"
    body = json.dumps({"error": {"code": "Authorization_RequestDenied",
                                 "message": f"Insufficient privileges (Bearer {secret})"}}).encode()
    client = graph_client(state, faults=[("GET", 403, {"Content-Type": "application/json"}, body)])
    client.http._token_getter = lambda scope: secret
    with pytest.raises(AuthError) as e:
        client.list()
    assert secret not in e.value.message and "\n" not in e.value.message
    assert e.value.exit_code == 3 and "403" in e.value.message


def test_config_errors():
    ident = type("I", (), {"fic_target": "uami", "uami_resource_id": "/subscriptions/x/bad", "cloud": "public",
                           "arm_url": None, "graph_url": None, "application_object_id": None})()
    with pytest.raises(ConfigError, match="uami_resource_id"):
        entra.client_from_settings(ident, environ={"PPMI_ACCESS_TOKEN": "t"})
    ident.fic_target = "app"
    with pytest.raises(ConfigError, match="application_object_id"):
        entra.client_from_settings(ident, environ={"PPMI_ACCESS_TOKEN": "t"})
    ident.application_object_id = APP
    ident.cloud = "usnat"
    with pytest.raises(ConfigError, match="graph_url"):
        entra.client_from_settings(ident, environ={"PPMI_ACCESS_TOKEN": "t"})


def test_static_token_precedence():
    env = {"PPMI_ACCESS_TOKEN": "a", "PPMI_GRAPH_TOKEN": "g"}
    assert default_token_getter("graph", env)("https://graph.microsoft.com/.default") == "g"
    assert default_token_getter("arm", env)("https://management.azure.com/.default") == "a"
    assert scope_for("https://graph.microsoft.com/v1.0") == "https://graph.microsoft.com/.default"


# --- over loopback HTTP, through the emulator server --------------------------------------------------


def test_graph_and_arm_through_emulator_server(emulator):  # noqa: F811
    retry = RetryPolicy(max_retries=2, backoff_base=0.01)
    graph = GraphFicClient(emulator.url, APP, lambda scope: emulator.token, retry=retry)
    arm = ArmFicClient(emulator.url, UAMI, lambda scope: emulator.token, retry=retry)
    with graph, arm:
        assert ensure_fic(graph, fic(1)).status == "created"
        assert ensure_fic(graph, fic(1)).status == "unchanged"
        assert ensure_fic(arm, fic(1)).status == "created"
        assert [f.name for f in arm.list()] == ["fic-1"]
        assert arm.delete(fic(1)) and arm.list() == []
    paths = [(r["method"], r["path"], r["status"]) for r in emulator.requests()]
    assert ("POST", f"/v1.0/applications/{APP}/federatedIdentityCredentials", 201) in paths
    assert ("PUT", f"{UAMI}/federatedIdentityCredentials/fic-1", 201) in paths
    assert ("DELETE", f"{UAMI}/federatedIdentityCredentials/fic-1", 200) in paths
    # wrong token: the server refuses before Entra code runs
    bad = GraphFicClient(emulator.url, APP, lambda scope: "wrong", retry=retry)
    with pytest.raises(AuthError):
        bad.list()


def test_arm_concurrency_over_http(emulator):  # noqa: F811
    url = f"{emulator.url}{UAMI}/federatedIdentityCredentials/"
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def put(i):
        body = {"properties": {"issuer": ISSUER, "subject": f"s{i}", "audiences": [AUD]}}
        barrier.wait()
        r = httpx.put(f"{url}raw-{i}", params={"api-version": "2023-01-31"}, json=body,
                      headers={"Authorization": f"Bearer {emulator.token}"})
        statuses.append(r.status_code)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 409 in statuses and 201 in statuses
    # the client serialises its own writes: 6 threads, no 409 seen by the server
    emulator.reset()
    client = ArmFicClient(emulator.url, UAMI, lambda scope: emulator.token, retry=RetryPolicy(backoff_base=0.01))
    threads = [threading.Thread(target=client.create, args=(fic(i),)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(client.list()) == 6
    assert not [r for r in emulator.requests() if r["status"] == 409]


def test_lost_answer_to_a_create_is_not_duplicated(emulator):  # noqa: F811
    """The server stores the FIC, then the connection drops before the answer: the client finds it by listing."""
    emulator.add_fault(method="POST", path_contains="federatedIdentityCredentials", drop_after_commit=True)
    client = GraphFicClient(emulator.url, APP, lambda scope: emulator.token, retry=RetryPolicy(backoff_base=0.01))
    with client:
        res = ensure_fic(client, fic(7))
        assert res.status == "created" and res.fic.id
        assert [f.name for f in client.list()] == ["fic-7"]
    posts = [r for r in emulator.requests() if r["method"] == "POST"]
    assert len(posts) == 1 and posts[0]["fault"] == "drop_after_commit"


def test_plain_http_only_to_loopback():
    with pytest.raises(ConfigError, match="https"):
        GraphFicClient("http://graph.example.com", APP, lambda scope: TOKEN)
    GraphFicClient("http://127.0.0.1:1", APP, lambda scope: TOKEN).close()
