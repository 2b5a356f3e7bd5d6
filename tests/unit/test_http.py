"""The one HTTP layer (ppmi_build.http): environment numbers, Retry-After (RFC 9110 §10.2.3), the retry rules for
idempotent and non-idempotent requests, the TLS/loopback rule and redaction. No test sleeps: waits go through the
policy's injected ``sleep``.

Expected values come from the sources: the two ``Retry-After`` examples of RFC 9110 §10.2.3 (``120`` and
``Fri, 31 Dec 1999 23:59:59 GMT``), RFC 9110 §9.2.2 for which methods are idempotent, and the status meanings of
RFC 6585 §4 (429) and RFC 9110 §15.6.4 (503: not processed).
"""

from __future__ import annotations

import calendar

import httpx
import pytest

from ppmi_build.entra import GraphFicClient
from ppmi_build.errors import ConfigError, ServiceError, TransportFailure
from ppmi_build.http import RetryPolicy, check_url, new_client, parse_retry_after, redact_url, timeout_from_env
from ppmi_build.http.tokens import KEY_VAULT_SCOPE, TRUSTED_SIGNING_SCOPE, AzureIdentityToken

APP = "bcd7c908-1c4d-4d48-93ee-ff38349a75c8"


def policy(waits: list[float], **kw) -> RetryPolicy:
    return RetryPolicy(**{"max_retries": 3, "backoff_base": 0.5, "sleep": waits.append, **kw})


def sender(answers: list):
    """A ``send`` callable answering from ``answers`` (a Response, or an exception to raise) and counting calls."""
    calls: list[int] = []

    def send() -> httpx.Response:
        calls.append(1)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return send, calls


# --- environment numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "NaN", "soon"])
def test_bad_timeout_is_one_clear_config_error(value):
    with pytest.raises(ConfigError) as ei:
        timeout_from_env({"PPMI_HTTP_TIMEOUT": value})
    assert "PPMI_HTTP_TIMEOUT" in str(ei.value) and "\n" not in str(ei.value) and ei.value.exit_code == 2
    with pytest.raises(ConfigError, match="PPMI_HTTP_TIMEOUT"):
        RetryPolicy.from_env({"PPMI_HTTP_TIMEOUT": value})


@pytest.mark.parametrize("var", ["PPMI_HTTP_BACKOFF", "PPMI_HTTP_BACKOFF_MAX", "PPMI_HTTP_MAX_RETRY_AFTER",
                                 "PPMI_HTTP_RETRIES"])
def test_other_numbers_refuse_nan_inf_and_negative(var):
    for value in ("nan", "inf", "-2"):
        with pytest.raises(ConfigError, match=var):
            RetryPolicy.from_env({var: value})


def test_zero_timeout_is_refused_and_unset_is_the_default():
    with pytest.raises(ConfigError, match="PPMI_HTTP_TIMEOUT=0"):
        timeout_from_env({"PPMI_HTTP_TIMEOUT": "0"})
    assert timeout_from_env({}) == 120.0 and timeout_from_env({"PPMI_HTTP_TIMEOUT": ""}) == 120.0
    p = RetryPolicy.from_env({"PPMI_HTTP_MAX_RETRY_AFTER": "60", "PPMI_HTTP_BACKOFF_MAX": "4"}, max_retries=1)
    assert (p.max_retry_after, p.backoff_max, p.max_retries) == (60.0, 4.0, 1)


# --- Retry-After --------------------------------------------------------------------------------------------


def test_retry_after_examples_of_rfc_9110():
    assert parse_retry_after("120", now=0.0) == 120.0
    two_minutes_before = calendar.timegm((1999, 12, 31, 23, 57, 59, 0, 0, 0))
    assert parse_retry_after("Fri, 31 Dec 1999 23:59:59 GMT", now=two_minutes_before) == 120.0
    assert parse_retry_after("Fri, 31 Dec 1999 23:59:59 GMT", now=two_minutes_before + 600) == 0.0  # in the past
    assert parse_retry_after("whenever", now=0.0) is None and parse_retry_after(None, now=0.0) is None


def test_retry_after_date_uses_the_injected_clock():
    waits: list[float] = []
    now = calendar.timegm((1999, 12, 31, 23, 59, 29, 0, 0, 0))
    p = policy(waits, clock=lambda: now)
    send, calls = sender([httpx.Response(503, headers={"Retry-After": "Fri, 31 Dec 1999 23:59:59 GMT"}),
                          httpx.Response(200)])
    out = p.run(send)
    assert out.response.status_code == 200 and waits == [30.0] and len(calls) == 2


def test_retry_after_beyond_the_cap_stops_at_once_without_waiting():
    waits: list[float] = []
    send, calls = sender([httpx.Response(429, headers={"Retry-After": "301"})])
    out = policy(waits, max_retry_after=300).run(send)
    assert (out.gave_up, out.retry_after, out.attempts, waits, len(calls)) == ("retry-after", 301.0, 1, [], 1)
    send, calls = sender([httpx.Response(429, headers={"Retry-After": "300"}), httpx.Response(200)])
    assert policy(waits, max_retry_after=300).run(send).response.status_code == 200 and waits == [300.0]


def test_graph_reports_a_retry_after_beyond_the_cap():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "3600"}, json={"error": {"code": "TooManyRequests"}})

    waits: list[float] = []
    client = GraphFicClient("https://graph.microsoft.com", APP, lambda scope: "tok",
                            client=httpx.Client(transport=httpx.MockTransport(handler)), retry=policy(waits))
    with pytest.raises(ServiceError) as ei:
        client.list()
    assert ei.value.status == 429 and "3600 s" in str(ei.value) and "PPMI_HTTP_MAX_RETRY_AFTER" in str(ei.value)
    assert waits == []


# --- what is retried ----------------------------------------------------------------------------------------


def test_retries_are_bounded_and_back_off_grows():
    waits: list[float] = []
    send, calls = sender([httpx.Response(502) for _ in range(10)])
    out = policy(waits, backoff_base=1.0, backoff_max=8.0).run(send)
    assert out.gave_up == "retries" and out.attempts == 4 and len(calls) == 4 and out.ambiguous
    for attempt, (wait, full) in enumerate(zip(waits, (1.0, 2.0, 4.0), strict=True)):
        assert full / 2 <= wait <= full, attempt


def test_non_idempotent_request_is_retried_only_when_not_processed():
    request = httpx.Request("POST", "https://graph.microsoft.com/v1.0/x")
    waits: list[float] = []
    # the request was sent and the answer lost: not repeated
    send, calls = sender([httpx.ReadTimeout("timed out", request=request), httpx.Response(201)])
    with pytest.raises(TransportFailure) as ei:
        policy(waits).run(send, idempotent=False)
    assert len(calls) == 1 and ei.value.reason == "ReadTimeout" and ei.value.ambiguous
    # the connection was never made, then 503 and 429 (not processed): repeated
    send, calls = sender([httpx.ConnectError("refused", request=request), httpx.Response(503), httpx.Response(429),
                          httpx.Response(201)])
    assert policy(waits).run(send, idempotent=False).response.status_code == 201 and len(calls) == 4
    # 502 may have been processed behind the gateway: not repeated
    send, calls = sender([httpx.Response(502), httpx.Response(201)])
    assert policy(waits).run(send, idempotent=False).response.status_code == 502 and len(calls) == 1


def test_idempotent_request_survives_a_lost_answer_and_says_it_was_ambiguous():
    request = httpx.Request("PUT", "https://management.azure.com/x")
    waits: list[float] = []
    send, calls = sender([httpx.ReadError("reset", request=request), httpx.Response(200)])
    out = policy(waits).run(send)
    assert out.response.status_code == 200 and out.ambiguous and len(calls) == 2 and len(waits) == 1


def test_transport_failure_after_the_retries():
    request = httpx.Request("GET", "https://x.example/")
    waits: list[float] = []
    send, calls = sender([httpx.ConnectError("refused", request=request) for _ in range(3)])
    with pytest.raises(TransportFailure) as ei:
        policy(waits, max_retries=2).run(send)
    assert ei.value.attempts == 3 and len(calls) == 3 and not ei.value.ambiguous and ei.value.exit_code == 3
    assert "after 3 attempts: ConnectError" in str(ei.value)


# --- URLs, client, tokens -----------------------------------------------------------------------------------


def test_url_rule_and_redaction():
    with pytest.raises(ConfigError) as ei:
        check_url("http://user:s3cret@graph.example.com/?sig=abc", what="graph_url")
    assert "s3cret" not in str(ei.value) and "sig=abc" not in str(ei.value) and "graph_url" in str(ei.value)
    assert check_url("http://[::1]:8080/") == "http://[::1]:8080"
    assert check_url("http://emu.localhost:1") == "http://emu.localhost:1"
    assert redact_url("https://u:p@tsa.example/ts?code=abc") == "https://***@tsa.example/ts?***"


def test_client_sends_the_user_agent_and_does_not_follow_redirects():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(302, headers={"Location": "https://elsewhere.example/"})

    with new_client(transport=httpx.MockTransport(handler)) as c:
        assert c.get("https://a.example/").status_code == 302
    assert len(seen) == 1 and seen[0].headers["User-Agent"].startswith("ppmi-build/")


def test_key_vault_and_trusted_signing_scopes_name_their_service():
    class Unavailable:
        def get_token(self, *scopes, **kw):
            from azure.identity import CredentialUnavailableError

            raise CredentialUnavailableError(message="not configured")

    pytest.importorskip("azure.identity")
    assert KEY_VAULT_SCOPE == "https://vault.azure.net/.default"
    assert TRUSTED_SIGNING_SCOPE == "https://codesigning.azure.net/.default"
    for scope, service in ((KEY_VAULT_SCOPE, "Key Vault"), (TRUSTED_SIGNING_SCOPE, "Trusted Signing")):
        with pytest.raises(ConfigError, match=f"^no {service} credentials"):
            AzureIdentityToken(Unavailable(), scope, "AzureCliCredential").token()


def test_identity_package_has_no_http_code():
    """identity/ is pure computation (DN, FIC values and records, GUIDs, certificates, snk): no module in it imports
    httpx, the HTTP layer, the Entra clients or the Dataverse client."""
    import ast
    from pathlib import Path

    import ppmi_build.identity as identity

    forbidden = ("httpx", "ppmi_build.http", "ppmi_build.entra", "ppmi_build.dataverse")
    relative = ("http", "entra", "dataverse")
    found = []
    for path in Path(identity.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                names = [mod] if node.level == 0 else [f"..{mod}"] + [f"..{mod}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                bare = name.lstrip(".")
                if name.startswith("..") and (bare.split(".")[0] in relative or bare.lstrip(".") in relative):
                    found.append(f"{path.name}: {name}")
                elif not name.startswith(".") and name.startswith(forbidden):
                    found.append(f"{path.name}: {name}")
    assert found == []
