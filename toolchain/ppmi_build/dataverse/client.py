"""A small Dataverse Web API client: OData headers, typed errors, idempotent creates; transport, retries and
tokens from :mod:`ppmi_build.http`.

What it does, and the source for each rule:

* Headers on every request: ``Accept: application/json``, ``OData-MaxVersion: 4.0``, ``OData-Version: 4.0``,
  ``Content-Type: application/json`` with a body, ``If-None-Match: null`` on reads ([WEBAPI-ERR] "HTTP headers",
  domain-spec §4.3). ``Prefer: return=representation`` on create/update when the caller wants the row back (201/200
  instead of 204 + ``OData-EntityId``, [WEBAPI-CREATE]). ``MSCRM.SolutionUniqueName`` on creates adds the new
  component to a solution (domain-spec §4.3). Updates send ``If-Match: *`` so a PATCH never creates a row by
  upsert.
* Errors: the body ``{"error": {"code", "message"}}`` ([WEBAPI-ERR], domain-spec §4.4) becomes a
  :class:`~ppmi_build.errors.DataverseError` (an :class:`~ppmi_build.errors.ServiceError`, exit code 3) carrying the
  HTTP status, the Dataverse code and a hint (:data:`HINTS`, e.g. ``0x80040216`` = the artifact is not signed,
  domain-spec §4.7). 401/403 become :class:`~ppmi_build.errors.DataverseAuthError`, never retried.
* Retries ([API-LIMITS], domain-spec §4.5) follow :class:`ppmi_build.http.RetryPolicy`: 429 waits exactly
  ``Retry-After`` seconds (a longer wait than ``max_retry_after`` is refused with the service's error);
  502/503/504 and connection failures wait a bounded jittered back-off. 500 is not retried: Dataverse reports
  operation errors (a failing plug-in, a SQL error) as 500, and repeating them changes nothing.
* A create that may have reached the server before the connection failed is retried with the same client-chosen
  primary key; if the retry answers 412 ``0x80040237`` (a record with that key already exists), the row is read
  back and returned: a create is never duplicated and never lost.
* Every request has a timeout (connect 10 s; read/write ``PPMI_HTTP_TIMEOUT``, default 120 s for 16 MB uploads).
* ``http://`` is refused except for loopback hosts (:func:`ppmi_build.http.check_url`): tokens travel only over TLS.
* The access token is taken from the :class:`~ppmi_build.http.tokens.TokenProvider` on every attempt and never
  appears in messages or logs (messages pass through :func:`~ppmi_build.errors.redact`).
"""

from __future__ import annotations

import binascii
import dataclasses
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from ..errors import ConfigError, DataverseAuthError, DataverseError, ServiceError, TransportFailure, redact
from ..http.client import check_url, is_loopback, new_client
from ..http.retry import RetryEvent, RetryPolicy, attempts_text
from ..http.tokens import TokenProvider

__all__ = ["API_VERSIONS", "HINTS", "RETRY_STATUSES", "Body", "DataverseAuthError", "DataverseClient",
           "DataverseError", "RetryPolicy", "check_url", "connect", "encode_body", "is_loopback", "odata_literal",
           "parse_error"]

log = logging.getLogger("ppmi_build.dataverse")

API_VERSIONS = ("v9.2", "v9.1", "v9.0")
#: statuses retried for Dataverse (domain-spec §4.5; 500 is an operation error, see the module docstring)
RETRY_STATUSES = (429, 502, 503, 504)
DUPLICATE_KEY = "0x80040237"

#: Dataverse error code -> what it means here and the fix (domain-spec §4.4-4.7, §6)
HINTS: dict[str, str] = {
    "0x80040216": "the artifact is not signed with a certificate (Authenticode for a .dll, NuGet signature for a "
                  ".nupkg): sign it with `ppmi-build sign`, run `ppmi-build register` again, then bind",
    "0x80040217": "the row does not exist (deleted, or another environment); run `ppmi-build register` first",
    "0x80040237": "a row with this key already exists",
    "0x80072322": "service protection limit: too many requests in 5 minutes; wait and run again",
    "0x80072321": "service protection limit: too much execution time in 5 minutes; wait and run again",
    "0x80072326": "service protection limit: too many concurrent requests; run fewer jobs at once",
    "0x80060888": "the request used a column this table does not have; check the Dataverse version",
    "0x80044331": "a value is longer than the column allows",
}
#: message fragment -> hint, for errors Dataverse reports without a useful code
MESSAGE_HINTS: tuple[tuple[str, str], ...] = (
    ("public key token", "standalone plug-in assemblies must be strong-named: build with a .snk key "
                         "(`ppmi-build snk`) or register a plug-in package instead"),
    ("cannot be changed", "a plug-in package keeps the version it was created with; ppmi-build sends only the new "
                          "content, so do not change the version by hand"),
    ("part of plugin package", "this assembly belongs to a plug-in package: register the .nupkg instead"),
    ("fullnames must be unique", "another assembly with the same name, culture, key and major.minor is registered"),
    ("16 MB", "plug-in assemblies and packages are limited to 16 MB"),
)
STATUS_HINTS = {
    401: "the access token was refused: check PPMI_ACCESS_TOKEN / PPMI_AUTH and that the token is for this "
         "environment URL",
    403: "the identity has no access: add it as an application user with a security role in this environment",
    404: "not found: check the environment URL and the Web API version",
    413: "the request is too large",
    502: "Dataverse (or a gateway) is unavailable; run again later",
    503: "Dataverse is unavailable or throttling; run again later",
    504: "Dataverse did not answer in time; run again later",
}


def odata_literal(value: str) -> str:
    """An OData string literal: ``'it''s'`` (single quotes doubled, OData URL conventions §5.1.1.6.1)."""
    return "'" + str(value).replace("'", "''") + "'"


class Body:
    """A JSON request body whose ``"content"`` column is base64-encoded while it is being sent.

    The base64 text is produced in 3 MiB steps as httpx writes the request (``Content-Length`` is known in advance),
    so a 16 MB artifact never exists as a 22 MB JSON string in memory. Iterable any number of times (retries).
    ``bytes(body)`` gives the whole body.
    """

    STEP = 3 * 1024 * 1024  # multiple of 3: base64 of consecutive steps concatenates to the base64 of the whole

    def __init__(self, fields: Mapping[str, Any], content: bytes):
        head = json.dumps(dict(fields), separators=(",", ":")).encode()
        self._prefix = head[:-1] + (b"," if len(head) > 2 else b"") + b'"content":"'
        self._content = content
        self._suffix = b'"}'

    def __len__(self) -> int:
        return len(self._prefix) + 4 * ((len(self._content) + 2) // 3) + len(self._suffix)

    def __iter__(self):
        yield self._prefix
        view = memoryview(self._content)
        for i in range(0, len(view), self.STEP):
            yield binascii.b2a_base64(view[i:i + self.STEP], newline=False)
        yield self._suffix

    def __bytes__(self) -> bytes:
        return b"".join(self)


def encode_body(fields: Mapping[str, Any], *, content: bytes | None = None) -> bytes | Body:
    """The JSON body for ``fields``; with ``content``, a streamed :class:`Body` that adds ``"content"`` (base64)."""
    if content is None:
        return json.dumps(dict(fields), separators=(",", ":")).encode()
    return Body(fields, content)


class DataverseClient:
    """Web API client for one environment.

    Args:
        url: environment URL (``https://contoso.crm.dynamics.com``; a URL already ending in ``/api/data/v9.x`` is
            kept as it is).
        tokens: token provider (:func:`ppmi_build.http.tokens.token_provider`).
        api_version: ``v9.2`` (default) or ``v9.0``/``v9.1``.
        retry: :class:`RetryPolicy` (default: from the environment).
        solution: default ``MSCRM.SolutionUniqueName`` for creates.
        on_retry: called with a one-line message before each retry wait (progress on stderr).
        sleep: replaces the policy's ``sleep`` (tests assert the waits through it).
        transport: an httpx transport (tests).
    Raises:
        ConfigError: bad URL (see :func:`check_url`).
    """

    def __init__(self, url: str, tokens: TokenProvider, *, api_version: str = "v9.2", retry: RetryPolicy | None = None,
                 solution: str | None = None, on_retry: Callable[[str], None] | None = None,
                 sleep: Callable[[float], None] | None = None, transport: httpx.BaseTransport | None = None):
        base = check_url(url)
        if api_version not in API_VERSIONS:
            raise ConfigError(f"Web API version {api_version!r} is not supported; use v9.2 or v9.0")
        m = re.search(r"/api/data/(v9\.\d+)$", base)
        self.api_url = base if m else f"{base}/api/data/{api_version}"
        self.url = base[: m.start()] if m else base
        self.tokens = tokens
        policy = retry or RetryPolicy.from_env()
        self.retry = dataclasses.replace(policy, sleep=sleep) if sleep is not None else policy
        self.solution = solution
        self.on_retry = on_retry
        self.requests_sent = 0
        self.retries = 0
        self._http = new_client(timeout=self.retry.timeout, connect_timeout=self.retry.connect_timeout,
                                transport=transport, headers={"Accept": "application/json",
                                                              "OData-MaxVersion": "4.0", "OData-Version": "4.0"})

    # --- lifecycle -------------------------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DataverseClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<DataverseClient {self.api_url}>"

    # --- core ------------------------------------------------------------------------------------------------
    def _url(self, path: str) -> str:
        return f"{self.api_url}/{path.lstrip('/')}"

    def _notify(self, msg: str) -> None:
        log.info("%s", msg)
        if self.on_retry:
            self.on_retry(msg)

    def _retrying(self, label: str, event: RetryEvent) -> None:
        self.retries += 1
        self._notify(event.describe(label))

    def _send(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
              body: bytes | Body | None = None, headers: Mapping[str, str] | None = None
              ) -> tuple[httpx.Response, bool]:
        """Send with retries (:meth:`ppmi_build.http.RetryPolicy.run`, statuses :data:`RETRY_STATUSES`).
        Returns (final response, ambiguous) where ``ambiguous`` is True when an earlier attempt may have reached
        the server (connection lost after sending, 502/504).

        Raises:
            DataverseError: connection failures after the retries, retries used up on 429/5xx, or a
                ``Retry-After`` longer than the policy's ``max_retry_after``.
        """
        hdrs = dict(headers or {})
        if body is not None:
            hdrs.setdefault("Content-Type", "application/json; charset=utf-8")
        if isinstance(body, Body):
            hdrs["Content-Length"] = str(len(body))  # streamed, not chunked
        label = f"{method} {path.split('?')[0]}"
        url = self._url(path)

        def send() -> httpx.Response:
            hdrs["Authorization"] = f"Bearer {self.tokens.token()}"
            self.requests_sent += 1
            started = time.monotonic()
            try:
                resp = self._http.request(method, url, params=params, content=body, headers=hdrs)
            finally:
                hdrs.pop("Authorization", None)
            log.debug("%s -> %s (%.2f s)", label, resp.status_code, time.monotonic() - started)
            return resp

        try:
            out = self.retry.run(send, statuses=RETRY_STATUSES, on_retry=lambda ev: self._retrying(label, ev))
        except TransportFailure as e:
            raise DataverseError(f"{label} to {self.url} failed after {attempts_text(e.attempts)}: {e.reason}",
                                 hint="check the network and the environment URL, then run again") from None
        if out.gave_up == "retry-after":
            raise self._error(out.response, label, extra=f"throttled for {out.retry_after:.0f} s (more than "
                                                         f"{self.retry.max_retry_after:.0f} s)")
        if out.gave_up == "retries":
            raise self._error(out.response, label, extra=f"after {attempts_text(out.attempts)}")
        return out.response, out.ambiguous

    def _error(self, resp: httpx.Response, label: str, *, extra: str = "") -> DataverseError:
        code, server_msg = parse_error(resp)
        token_values = []
        try:
            token_values.append(self.tokens.token())
        except Exception:  # pragma: no cover - the provider already worked for this request
            pass
        server_msg = redact(server_msg, *token_values)
        hint = HINTS.get(code or "", "")
        if not hint:
            low = server_msg.lower()
            hint = next((h for frag, h in MESSAGE_HINTS if frag.lower() in low), "")
        if not hint:
            hint = STATUS_HINTS.get(resp.status_code, "")
        what = f"{label} -> HTTP {resp.status_code}"
        if code and code not in ("0x0", ""):
            what += f" {code}"
        if server_msg:
            what += f": {server_msg}"
        if extra:
            what += f" ({extra})"
        cls = DataverseAuthError if resp.status_code in (401, 403) else DataverseError
        return cls(what, status=resp.status_code, code=code or None, hint=hint, server_message=server_msg)

    def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                body: bytes | Body | None = None,
                headers: Mapping[str, str] | None = None, ok: tuple[int, ...] = (200, 201, 204)) -> httpx.Response:
        """Send one request (with retries) and return the response; any status outside ``ok`` raises
        :class:`DataverseError`."""
        resp, _ = self._send(method, path, params=params, body=body, headers=headers)
        if resp.status_code not in ok:
            raise self._error(resp, f"{method} {path.split('?')[0]}")
        return resp

    # --- OData helpers ---------------------------------------------------------------------------------------
    @staticmethod
    def _params(select: list[str] | tuple[str, ...] | None = None, filter: str | None = None,
                top: int | None = None, orderby: str | None = None) -> dict[str, str]:
        p: dict[str, str] = {}
        if select:
            p["$select"] = ",".join(select)
        if filter:
            p["$filter"] = filter
        if top is not None:
            p["$top"] = str(top)
        if orderby:
            p["$orderby"] = orderby
        return p

    def query(self, entity_set: str, *, select: list[str] | tuple[str, ...] | None = None, filter: str | None = None,
              top: int | None = None, orderby: str | None = None) -> list[dict[str, Any]]:
        """``GET {entity_set}?$select&$filter&$top`` -> the ``value`` rows (follows ``@odata.nextLink``)."""
        rows: list[dict[str, Any]] = []
        resp = self.request("GET", entity_set, params=self._params(select, filter, top, orderby),
                            headers={"If-None-Match": "null"})
        while True:
            data = _json(resp)
            rows.extend(data.get("value", []))
            nxt = data.get("@odata.nextLink")
            if not nxt or (top is not None and len(rows) >= top):
                return rows
            rel = nxt[len(self.api_url):] if nxt.startswith(self.api_url) else nxt
            resp = self.request("GET", rel, headers={"If-None-Match": "null"})

    def retrieve(self, entity_set: str, id: str, *, select: list[str] | tuple[str, ...] | None = None
                 ) -> dict[str, Any] | None:
        """``GET {entity_set}({id})?$select`` -> the row, or None when it does not exist (404)."""
        resp, _ = self._send("GET", f"{entity_set}({id})", params=self._params(select),
                             headers={"If-None-Match": "null"})
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._error(resp, f"GET {entity_set}({id})")
        return _json(resp)

    def create(self, entity_set: str, body: Mapping[str, Any] | bytes | Body, *, id_column: str, id: str,
               select: list[str] | tuple[str, ...] | None = None, solution: str | None = None) -> dict[str, Any]:
        """``POST {entity_set}`` with a client-chosen primary key (``id_column`` = ``id`` must be in ``body``) and
        ``Prefer: return=representation``; returns the created row (``$select`` columns).

        A retried create whose first attempt did reach the server is detected (412 ``0x80040237`` after an
        ambiguous failure) and answered by reading the row back.
        """
        data = body if isinstance(body, (bytes, Body)) else encode_body(body)
        headers = {"Prefer": "return=representation"}
        sol = solution if solution is not None else self.solution
        if sol:
            headers["MSCRM.SolutionUniqueName"] = sol
        params = self._params(select)
        resp, ambiguous = self._send("POST", entity_set, params=params, body=data, headers=headers)
        if resp.status_code in (200, 201):
            return _json(resp)
        if resp.status_code == 204:  # server ignored Prefer
            return self.retrieve(entity_set, id, select=select) or {id_column: id}
        if ambiguous and resp.status_code == 412 and parse_error(resp)[0] == DUPLICATE_KEY:
            row = self.retrieve(entity_set, id, select=select)
            if row is not None:
                self._notify(f"POST {entity_set}: the first attempt had been saved; using row {id}")
                return row
        raise self._error(resp, f"POST {entity_set}")

    def update(self, entity_set: str, id: str, body: Mapping[str, Any] | bytes | Body, *,
               select: list[str] | tuple[str, ...] | None = None) -> dict[str, Any] | None:
        """``PATCH {entity_set}({id})`` with ``If-Match: *`` (never an upsert). With ``select`` the updated row is
        returned (``Prefer: return=representation``, 200), else None (204)."""
        data = body if isinstance(body, (bytes, Body)) else encode_body(body)
        headers = {"If-Match": "*"}
        if select:
            headers["Prefer"] = "return=representation"
        resp = self.request("PATCH", f"{entity_set}({id})", params=self._params(select), body=data, headers=headers)
        return _json(resp) if resp.status_code == 200 and resp.content else None

    def delete(self, entity_set: str, id: str) -> bool:
        """``DELETE {entity_set}({id})``; False when it did not exist."""
        resp, _ = self._send("DELETE", f"{entity_set}({id})")
        if resp.status_code == 404:
            return False
        if resp.status_code not in (200, 204):
            raise self._error(resp, f"DELETE {entity_set}({id})")
        return True

    def who_am_i(self) -> dict[str, Any]:
        """``GET WhoAmI`` -> ``{UserId, BusinessUnitId, OrganizationId}`` (a cheap connectivity/auth check)."""
        return _json(self.request("GET", "WhoAmI"))


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        raise ServiceError(f"{resp.request.method} {resp.request.url.path} answered HTTP {resp.status_code} with a "
                           "body that is not JSON", status=resp.status_code) from None
    if not isinstance(data, dict):
        raise ServiceError(f"{resp.request.url.path} answered with unexpected JSON", status=resp.status_code)
    return data


def parse_error(resp: httpx.Response) -> tuple[str | None, str]:
    """(code, message) from an OData error body; (None, reason phrase or "") when the body is not one."""
    try:
        data = resp.json()
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict):
            code = err.get("code")
            msg = err.get("message") or ""
            return (str(code) if code else None), " ".join(str(msg).split())[:500]
    except (ValueError, UnicodeDecodeError):
        pass
    text = " ".join(resp.text.split())[:200] if resp.content and len(resp.content) < 4096 else ""
    return None, text or resp.reason_phrase


def connect(env: Any, *, environ: Mapping[str, str] | None = None, on_retry: Callable[[str], None] | None = None,
            credential: Any = None, api_version: str = "v9.2") -> DataverseClient:
    """A client for a configured environment (``config.EnvironmentSettings``: ``url``, ``solution``), with the
    token provider from :func:`ppmi_build.http.tokens.token_provider` and the retry policy from ``PPMI_HTTP_*``.

    Raises:
        ConfigError: no url, bad url, or no credentials.
    """
    from ..http.tokens import token_provider

    if not getattr(env, "url", None):
        name = getattr(env, "name", "?")
        raise ConfigError(f"environment {name!r} has no url; set [environments.{name}] url in ppmi.toml or "
                          f"PPMI_ENV_{str(name).upper()}_URL")
    url = check_url(env.url)
    tokens = token_provider(url, environ=environ, credential=credential)
    return DataverseClient(url, tokens, api_version=api_version, retry=RetryPolicy.from_env(environ),
                           solution=getattr(env, "solution", None) or None, on_retry=on_retry)
