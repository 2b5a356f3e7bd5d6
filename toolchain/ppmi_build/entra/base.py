"""The HTTP session shared by the Graph and ARM federated identity credential (FIC) clients, and their common
interface.

Requests go through :mod:`ppmi_build.http`: https only except a loopback emulator (bearer tokens never travel in
clear text), ``PPMI_HTTP_TIMEOUT``, and the one :class:`~ppmi_build.http.RetryPolicy` (429/500/502/503/504 and
transport errors; ``Retry-After`` honoured up to its cap, RFC 9110 §10.2.3). A POST, which Graph does not make
idempotent, is retried only when it cannot have been processed (connection not established, 429, 503).
Error bodies ``{"error": {"code", "message"}}`` (Graph and ARM error format) become
:class:`~ppmi_build.errors.ServiceError` / :class:`~ppmi_build.errors.AuthError` (401/403), exit code 3, with the
token redacted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import httpx

from ..errors import AuthError, PlanRefused, ServiceError, TransportFailure, redact
from ..http.client import check_url, new_client, redact_url
from ..http.retry import RetryEvent, RetryPolicy
from ..http.tokens import scope_for
from ..identity.fic_records import FIC_CAP, Fic

if TYPE_CHECKING:
    import builtins  # FicClient.list shadows the builtin in class-level annotations

log = logging.getLogger("ppmi_build.entra")

#: ``scope -> bearer token`` (:func:`ppmi_build.http.tokens.default_token_getter`)
TokenGetter = Callable[[str], str]


def error_text(resp: httpx.Response) -> tuple[str | None, str]:
    """``(code, message)`` from a Graph/ARM error body ``{"error": {"code", "message"}}``."""
    try:
        body = resp.json()
    except (ValueError, json.JSONDecodeError):
        return None, resp.text[:300]
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return err.get("code"), str(err.get("message") or "")
    return None, json.dumps(body)[:300]


class FicHttp:
    """One Graph or ARM endpoint: base URL, token for its scope, httpx client and retry policy.

    Args:
        base_url: ``https://graph.microsoft.com/v1.0``, ``https://management.azure.com`` or a loopback emulator.
        token_getter: ``scope -> bearer token``; asked once, the token is kept for the client's life.
        client: an httpx client to use (tests); default :func:`ppmi_build.http.new_client`.
        retry: default :meth:`RetryPolicy.from_env`.
        service: ``"Graph"`` or ``"ARM"`` (messages).
    Raises:
        ConfigError: ``base_url`` is plain http to a non-loopback host, or not an absolute URL.
    """

    def __init__(self, base_url: str, token_getter: TokenGetter, *, client: httpx.Client | None = None,
                 retry: RetryPolicy | None = None, service: str = "Graph"):
        self.base_url = check_url(base_url, what=f"{'graph_url' if service == 'Graph' else 'arm_url'}")
        self.scope = scope_for(self.base_url)
        self._token_getter = token_getter
        self._token: str | None = None
        self.retry = retry or RetryPolicy.from_env()
        self._client = client or new_client(timeout=self.retry.timeout, connect_timeout=self.retry.connect_timeout)
        self._own_client = client is None
        self.service = service

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def token(self) -> str:
        if self._token is None:
            self._token = self._token_getter(self.scope)
        return self._token

    def request(self, method: str, url: str, *, json_body: Any = None, params: dict[str, str] | None = None,
                idempotent: bool = True, retry_codes: tuple[str, ...] = ()) -> httpx.Response:
        """Send with retries; return the final response (any status).

        Args:
            retry_codes: error codes of a 409 answer that are retried too (ARM concurrent writes).
        Raises:
            ServiceError: transport failure after the retries (``status`` None), or a ``Retry-After`` longer
                than the policy's cap (``status`` 429/503).
        """
        if not url.startswith("http"):
            url = self.base_url + url

        def send() -> httpx.Response:
            headers = {"Authorization": f"Bearer {self.token()}", "Accept": "application/json"}
            return self._client.request(method, url, json=json_body, params=params, headers=headers)

        def retry_conflict(resp: httpx.Response) -> bool:
            return resp.status_code == 409 and error_text(resp)[0] in retry_codes

        def note(event: RetryEvent) -> None:
            log.info("%s", event.describe(f"{self.service} {method} {self._safe(url)}"))

        try:
            out = self.retry.run(send, idempotent=idempotent, retry_response=retry_conflict if retry_codes else None,
                                 on_retry=note)
        except TransportFailure as e:
            raise ServiceError(
                f"{self.service} {method} {self._safe(url)} failed: {redact(e.detail or e.reason, self._token)}; "
                f"check {self.base_url} is reachable", status=None) from None
        if out.gave_up == "retry-after":
            status = out.response.status_code
            raise ServiceError(
                f"{self.service} {method} {self._safe(url)} answered {status} and asked to wait "
                f"{out.retry_after:.0f} s (more than {self.retry.max_retry_after:.0f} s, PPMI_HTTP_MAX_RETRY_AFTER); "
                "run again later", status=status)
        return out.response

    def _safe(self, url: str) -> str:
        return redact(redact_url(str(httpx.URL(url).copy_with(query=None))), self._token)

    def fail(self, method: str, url: str, resp: httpx.Response, what: str) -> ServiceError:
        code, message = error_text(resp)
        message = redact(message, self._token)
        text = f"{self.service} {method} {self._safe(url if url.startswith('http') else self.base_url + url)} " \
               f"answered {resp.status_code}"
        if code:
            text += f" {code}"
        if message:
            text += f": {message}"
        text += f" ({what})"
        if resp.status_code in (401, 403):
            return AuthError(text + "; the token needs Application.ReadWrite.All (Graph) or Managed Identity "
                                    "Contributor (ARM) on the identity", status=resp.status_code, code=code)
        return ServiceError(text, status=resp.status_code, code=code)


class FicClient:
    """Common interface of :class:`GraphFicClient` and :class:`ArmFicClient`.

    ``target`` is a printable identity description (``app registration <objectId>`` or
    ``managed identity <resource id>``).
    """

    kind: str = ""
    target: str = ""

    def list(self) -> list[Fic]:  # pragma: no cover - interface
        raise NotImplementedError

    def create(self, fic: Fic) -> Fic:  # pragma: no cover - interface
        raise NotImplementedError

    def delete(self, fic: Fic) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def __enter__(self) -> FicClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def check_capacity(self, existing: builtins.list[Fic], adding: int = 1, keep: Iterable[Fic] = (),
                       candidates: builtins.list[str] | None = None) -> None:
        """Refuse before writing when ``len(existing) + adding`` would exceed :data:`FIC_CAP`.

        The message sorts the existing FICs: those ppmi-build created that could go (``candidates``), those
        ppmi-build created that are in use and must stay (``keep``: the FIC the deployed plug-in needs), the
        other FICs ppmi-build created (other environments, certificates or versions: check before deleting),
        and how many were not created by ppmi-build.

        Args:
            keep: FICs never proposed for removal (the one in use, the one being added).
            candidates: names to propose; default: the FICs made by ppmi-build, ``keep`` excluded.
        Raises:
            PlanRefused: ``code="FIC_CAP"``, exit 1.
        """
        if len(existing) + adding <= FIC_CAP:
            return
        keep = list(keep)
        ours = [f for f in existing if f.made_by_ppmi]
        in_use = [f.name for f in ours if any(f.same_values(k) for k in keep)]
        if candidates is None:
            candidates = [f.name for f in ours if f.name not in in_use]
        others = [f.name for f in ours if f.name not in in_use and f.name not in candidates]
        foreign = len(existing) - len(ours)
        parts = []
        if candidates:
            parts.append(f"FICs created by ppmi-build that could go: {', '.join(candidates)}")
        else:
            parts.append("no FIC created by ppmi-build can go")
        if in_use:
            parts.append(f"created by ppmi-build and in use (must stay): {', '.join(in_use)}")
        if others:
            parts.append(f"created by ppmi-build for other environments, certificates or versions (check they are "
                         f"unused before deleting): {', '.join(others)}")
        parts.append(f"{foreign} {'was' if foreign == 1 else 'were'} not created by ppmi-build")
        if candidates:
            action = ("delete one (in the portal, or for an old certificate `ppmi-build rotate --env NAME "
                      "--new-cert CURRENT --retire-old --old-fic NAME`)")
        else:
            action = "delete one you no longer need (in the portal)"
        raise PlanRefused(
            f"{self.target} already has {len(existing)} federated identity credentials, Entra's maximum is "
            f"{FIC_CAP}: adding {adding} would exceed it. {'; '.join(parts)}. {action}, then run again",
            code="FIC_CAP")
