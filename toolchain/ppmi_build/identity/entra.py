"""Entra federated identity credential (FIC) client: Microsoft Graph (app registrations) and
Azure Resource Manager (user-assigned managed identities).

Where the FIC lives is chosen by ``[identity] fic_target`` (DESIGN.md §4):

* ``"app"``: ``{graph_url}/v1.0/applications/{application_object_id}/federatedIdentityCredentials``
  (Graph ``federatedIdentityCredential`` resource: ``{id, name, issuer, subject, audiences, description}``;
  ``POST`` creates (201), ``GET`` lists ``{"value": [...], "@odata.nextLink"?}``, ``DELETE …/{id}`` (204)).
* ``"uami"``: ``{arm_url}{uami_resource_id}/federatedIdentityCredentials/{name}?api-version=2023-01-31``
  (ARM ``Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials``: ``PUT`` with
  ``{"properties": {"issuer", "subject", "audiences"}}`` (201/200), ``GET`` list ``{"value": [...], "nextLink"?}``,
  ``DELETE`` (200/204)).

Entra rules enforced before any write (domain-spec §1.7, Entra "federated identity credential
considerations", Graph federatedIdentityCredential resource, ARM FIC REST reference):

* at most :data:`FIC_CAP` (20) FICs per application or UAMI, counted before creating;
* ``name`` 3–120 characters, ``^[A-Za-z0-9][A-Za-z0-9_-]{2,119}$`` (the ARM path pattern), immutable;
* ``issuer``/``subject``/the single audience/``description`` at most 600 characters, no wildcards,
  no leading/trailing whitespace in ``issuer``; the (issuer, subject) pair unique per identity;
* writes to one UAMI are sequential: concurrent writes get HTTP 409
  ``ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity``; this client holds one lock
  per UAMI and retries that 409 with back-off;
* issuer/subject/audience matching is case-sensitive (Entra breaking change Aug 2024, ``AADSTS7002138``):
  an existing FIC that differs only in case does *not* count as present and is reported as such.

Authentication: a bearer token for ``https://graph.microsoft.com/.default`` or
``https://management.azure.com/.default`` (sovereign clouds: their own hosts). Static tokens come from
``PPMI_GRAPH_TOKEN`` / ``PPMI_ARM_TOKEN``, then ``PPMI_ACCESS_TOKEN``; otherwise the Dataverse token
provider (``ppmi_build.dataverse.auth``, azure-identity) is asked for the scope. Tokens never appear in
messages (:func:`ppmi_build.errors.redact`).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

if TYPE_CHECKING:
    import builtins  # FicClient.list shadows the builtin in class-level annotations

from ..errors import AuthError, CheckFailed, ConfigError, PlanRefused, ServiceError, redact

#: Entra: "A maximum of 20 federated identity credentials can be added to an application or
#: user-assigned managed identity." (entra-docs federated-credential-configuration-considerations)
FIC_CAP = 20
#: issuer, subject, audience and description limits (same source, Graph resource reference).
MAX_VALUE_CHARS = 600
#: ARM path pattern for federatedIdentityCredentialResourceName (2023-01-31 REST reference); the
#: Entra considerations page says the same in words (3-120, alphanumeric/dash/underscore, first alphanumeric).
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,119}$")
#: ARM API version of Microsoft.ManagedIdentity used for FICs.
ARM_API_VERSION = "2023-01-31"
#: ARM error code for concurrent FIC writes under one UAMI (seen in Azure/bicep-registry-modules#1447,
#: pulumi/pulumi-azure-native#4343: 409 "Too many Federated Identity Credentials are written concurrently").
ARM_CONCURRENT_CODE = "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity"
#: Marker put in the description of every FIC this tool creates, so we can say which FICs could go.
DESCRIPTION_MARKER = "ppmi-build"

#: Default endpoints per cloud (DESIGN.md §4 ``cloud``). usnat/ussec have no public endpoints: set
#: ``graph_url``/``arm_url`` explicitly.
GRAPH_URLS = {
    "public": "https://graph.microsoft.com",
    "usgov": "https://graph.microsoft.us",
    "china": "https://microsoftgraph.chinacloudapi.cn",
}
ARM_URLS = {
    "public": "https://management.azure.com",
    "usgov": "https://management.usgovcloudapi.net",
    "china": "https://management.chinacloudapi.cn",
}

_UAMI_RE = re.compile(
    r"^/subscriptions/(?P<sub>[0-9a-fA-F-]{36})/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"Microsoft\.ManagedIdentity/userAssignedIdentities/(?P<name>[^/]+)$",
    re.IGNORECASE,
)
_RETRY_STATUS = {429, 500, 502, 503, 504}

TokenGetter = Callable[[str], str]


# --- records ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fic:
    """A federated identity credential as Graph or ARM returns it.

    Attributes:
        name: the FIC name (unique per identity, immutable).
        issuer / subject: exact strings, compared case-sensitively.
        audiences: list with one audience (e.g. ``api://AzureADTokenExchange``).
        description: free text (Graph only; ARM has no description, we return "").
        id: Graph object id (GUID) or ARM resource id; None for a FIC not yet created.
    """

    name: str
    issuer: str
    subject: str
    audiences: tuple[str, ...]
    description: str = ""
    id: str | None = None

    @property
    def audience(self) -> str:
        return self.audiences[0] if self.audiences else ""

    def same_values(self, other: Fic) -> bool:
        """Exact (case-sensitive) equality of issuer, subject and audiences: what Entra matches on."""
        return (self.issuer, self.subject, tuple(self.audiences)) == (other.issuer, other.subject,
                                                                     tuple(other.audiences))

    def same_values_ignoring_case(self, other: Fic) -> bool:
        return (self.issuer.casefold(), self.subject.casefold(), tuple(a.casefold() for a in self.audiences)) == (
            other.issuer.casefold(), other.subject.casefold(), tuple(a.casefold() for a in other.audiences))

    @property
    def made_by_ppmi(self) -> bool:
        return DESCRIPTION_MARKER in (self.description or "") or self.name.startswith("ppmi-")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "issuer": self.issuer, "subject": self.subject,
                "audiences": list(self.audiences), "description": self.description, "id": self.id}


@dataclass
class FicMatch:
    """Result of looking for a desired FIC among the existing ones.

    Attributes:
        exact: the existing FIC with byte-identical issuer, subject and audience, or None.
        case_only: existing FICs equal to the desired one only when case is ignored; Entra will not
            match them (``AADSTS7002138``), so they are reported, not used.
        name_taken: an existing FIC that already uses the desired name with other values.
    """

    exact: Fic | None = None
    case_only: list[Fic] = field(default_factory=list)
    name_taken: Fic | None = None


def match_fic(existing: Iterable[Fic], desired: Fic) -> FicMatch:
    """Find ``desired`` among ``existing`` with Entra's case-sensitive matching (domain-spec §1.7)."""
    m = FicMatch()
    for fic in existing:
        if fic.same_values(desired):
            m.exact = m.exact or fic
        elif fic.same_values_ignoring_case(desired):
            m.case_only.append(fic)
        if fic.name.casefold() == desired.name.casefold() and not fic.same_values(desired):
            m.name_taken = fic
    return m


def case_only_message(desired: Fic, others: list[Fic]) -> str:
    """One line naming the FICs that differ from ``desired`` only in letter case, and which field."""
    parts = []
    for o in others:
        fields = [f for f, a, b in (("issuer", o.issuer, desired.issuer), ("subject", o.subject, desired.subject),
                                    ("audience", o.audience, desired.audience)) if a != b]
        parts.append(f"{o.name!r} ({', '.join(fields)})")
    return (f"FIC {', '.join(parts)} differs from the required values only in letter case; Entra matches "
            f"case-sensitively (AADSTS7002138), so it will not be used; delete it once the correct FIC works")


# --- validation and names -----------------------------------------------------------------------


def validate_fic_name(name: str) -> str:
    """Return ``name`` if Entra accepts it, else raise :class:`ConfigError` saying why.

    Rule: 3–120 characters, alphanumeric, dash or underscore, first character alphanumeric
    (Entra FIC considerations; ARM pattern ``^[a-zA-Z0-9]{1}[a-zA-Z0-9-_]{2,119}$``).
    """
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(
            f"FIC name {name!r} is not valid: use 3-120 characters, letters, digits, '-' or '_', "
            "starting with a letter or digit")
    return name


def validate_fic(fic: Fic) -> Fic:
    """Check a FIC against the Entra limits before sending it (domain-spec §1.7).

    Raises:
        ConfigError: name rule, empty or >600-character issuer/subject/audience/description, wildcard,
            leading/trailing whitespace in the issuer, not exactly one audience.
    """
    validate_fic_name(fic.name)
    if len(fic.audiences) != 1:
        raise ConfigError(f"FIC {fic.name!r} has {len(fic.audiences)} audiences; Entra accepts exactly one")
    for label, value in (("issuer", fic.issuer), ("subject", fic.subject), ("audience", fic.audience)):
        if not value:
            raise ConfigError(f"FIC {fic.name!r} has an empty {label}; compute it with `ppmi-build fic`")
        if len(value) > MAX_VALUE_CHARS:
            raise ConfigError(f"FIC {fic.name!r}: {label} is {len(value)} characters; Entra allows at most "
                              f"{MAX_VALUE_CHARS}")
        if "*" in value:
            raise ConfigError(f"FIC {fic.name!r}: {label} contains '*'; Entra does not support wildcards")
    if fic.issuer != fic.issuer.strip():
        raise ConfigError(f"FIC {fic.name!r}: issuer has leading or trailing whitespace; remove it")
    if len(fic.description or "") > MAX_VALUE_CHARS:
        raise ConfigError(f"FIC {fic.name!r}: description is longer than {MAX_VALUE_CHARS} characters")
    return fic


def desired_fic(values: Any, description: str = "") -> Fic:
    """The :class:`Fic` to create for ``identity.fic.compute_fic`` output ``values`` (issuer, subject,
    audience, name). The name is ``values.name`` (:func:`ppmi_build.identity.fic.fic_name`, the one source of
    FIC names: ``-v0``/``-v1`` suffixed for the older record versions, so an upgrade to version 2 (domain-spec
    §2.5: add the v2 FIC and keep the old one) never clashes with the old FIC's name).

    Raises:
        ConfigError: a value breaks an Entra rule (:func:`validate_fic`).
    """
    fic = Fic(name=values.name, issuer=values.issuer, subject=values.subject, audiences=(values.audience,),
              description=description[:MAX_VALUE_CHARS])
    return validate_fic(fic)


def fic_description(environment_name: str, environment_id: str, cert_subject: str, cert_sha256: str,
                    version: int) -> str:
    """Description written on FICs we create (Graph only keeps it): says who made it and for what."""
    text = (f"{DESCRIPTION_MARKER}: env {environment_name} ({environment_id}), managed identity v{version}, "
            f"certificate {cert_subject} sha256 {cert_sha256}")
    return text[:MAX_VALUE_CHARS]


# --- tokens -------------------------------------------------------------------------------------


def scope_for(base_url: str) -> str:
    """OAuth scope for an endpoint: ``{scheme}://{host}/.default`` (e.g. ``https://graph.microsoft.com/.default``)."""
    u = httpx.URL(base_url)
    return f"{u.scheme}://{u.host}/.default"


def static_token(kind: str, environ: dict[str, str] | None = None) -> str | None:
    """``PPMI_GRAPH_TOKEN`` (kind ``graph``) / ``PPMI_ARM_TOKEN`` (kind ``arm``), else ``PPMI_ACCESS_TOKEN``, else
    None. A variable that is set but empty counts as not set (one note on stderr); white space and a ``Bearer``
    prefix are removed (:func:`ppmi_build.dataverse.auth.env_token`).

    Raises:
        ConfigError: the token holds characters a token cannot have (non-ASCII, spaces, control characters):
            the message names the variable, never the value.
    """
    from ..dataverse.auth import env_token

    env = os.environ if environ is None else environ
    specific = {"graph": "PPMI_GRAPH_TOKEN", "arm": "PPMI_ARM_TOKEN"}[kind]
    found = env_token(env, specific, "PPMI_ACCESS_TOKEN")
    return found[0] if found else None


def default_token_getter(kind: str, environ: dict[str, str] | None = None) -> TokenGetter:
    """A function ``scope -> token`` for Graph (``kind="graph"``) or ARM (``kind="arm"``).

    Order: the static variables of :func:`static_token`; then the Dataverse token provider
    (:func:`ppmi_build.dataverse.auth.token_provider`: ``PPMI_AUTH``, azure-identity) asked for the scope.

    Raises (when called):
        ConfigError / AuthError: no usable credentials, or a static token with characters a token cannot have
            (the message says what to set).
    """

    def getter(scope: str) -> str:
        token = static_token(kind, environ)
        if token:
            return token
        from ..dataverse.auth import token_provider

        base = scope[: -len("/.default")] if scope.endswith("/.default") else scope
        return token_provider(base, environ=environ).token()

    return getter


# --- HTTP ---------------------------------------------------------------------------------------


@dataclass
class RetryPolicy:
    """Retries for 429/5xx (honouring ``Retry-After`` seconds, capped at ``max_wait_s``), transport
    errors on idempotent requests, and the ARM 409 concurrent-write error."""

    attempts: int = 5
    backoff_s: float = 0.5
    max_wait_s: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def wait(self, attempt: int, response: httpx.Response | None) -> None:
        delay = self.backoff_s * (2 ** attempt)
        if response is not None:
            ra = response.headers.get("Retry-After")
            if ra:
                try:
                    delay = float(ra)
                except ValueError:
                    pass
        self.sleep(min(max(delay, 0.0), self.max_wait_s))


def _error_text(resp: httpx.Response) -> tuple[str | None, str]:
    """``(code, message)`` from a Graph/ARM error body ``{"error": {"code", "message"}}``."""
    try:
        body = resp.json()
    except (ValueError, json.JSONDecodeError):
        return None, resp.text[:300]
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return err.get("code"), str(err.get("message") or "")
    return None, json.dumps(body)[:300]


class _Http:
    def __init__(self, base_url: str, token_getter: TokenGetter, *, client: httpx.Client | None = None,
                 retry: RetryPolicy | None = None, timeout: float = 30.0, service: str = "Graph"):
        from ..dataverse.client import check_url

        # https only, except a loopback emulator: bearer tokens never travel in clear text
        self.base_url = check_url(base_url, what=f"{'graph_url' if service == 'Graph' else 'arm_url'}")
        self.scope = scope_for(self.base_url)
        self._token_getter = token_getter
        self._token: str | None = None
        self._client = client or httpx.Client(timeout=timeout)
        self._own_client = client is None
        self.retry = retry or RetryPolicy()
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
        """Send with retries; return the final response (any status); raise ServiceError on transport failure."""
        if not url.startswith("http"):
            url = self.base_url + url
        last_exc: Exception | None = None
        for attempt in range(self.retry.attempts):
            headers = {"Authorization": f"Bearer {self.token()}", "Accept": "application/json"}
            try:
                resp = self._client.request(method, url, json=json_body, params=params, headers=headers)
            except httpx.TransportError as e:
                last_exc = e
                if not idempotent or attempt + 1 >= self.retry.attempts:
                    break
                self.retry.wait(attempt, None)
                continue
            # a POST is retried only on answers that say it was not processed (429, 503)
            retryable = resp.status_code in (_RETRY_STATUS if idempotent else {429, 503})
            if not retryable and retry_codes and resp.status_code == 409:
                retryable = _error_text(resp)[0] in retry_codes
            if retryable and attempt + 1 < self.retry.attempts:
                self.retry.wait(attempt, resp)
                continue
            return resp
        raise ServiceError(
            f"{self.service} {method} {self._safe(url)} failed: {redact(str(last_exc), self._token)}; "
            f"check {self.base_url} is reachable", status=None)

    def _safe(self, url: str) -> str:
        return redact(str(httpx.URL(url).copy_with(query=None)), self._token)

    def fail(self, method: str, url: str, resp: httpx.Response, what: str) -> ServiceError:
        code, message = _error_text(resp)
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


# --- clients ------------------------------------------------------------------------------------


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


class GraphFicClient(FicClient):
    """FICs of an app registration through Microsoft Graph v1.0.

    Args:
        graph_url: ``https://graph.microsoft.com`` (or a sovereign/emulator base); ``/v1.0`` is appended
            unless the URL already ends with ``/v1.0`` or ``/beta``.
        application_object_id: the app registration's **object** ID (not the client ID).
        token_getter: ``scope -> bearer token``.
    """

    kind = "app"

    def __init__(self, graph_url: str, application_object_id: str, token_getter: TokenGetter, *,
                 client: httpx.Client | None = None, retry: RetryPolicy | None = None):
        try:
            self.object_id = str(uuid.UUID(str(application_object_id)))
        except ValueError:
            raise ConfigError(f"[identity] application_object_id {application_object_id!r} is not a GUID; use the "
                              "app registration's Object ID (Entra admin center > App registrations)") from None
        base = graph_url.rstrip("/")
        if not (base.endswith("/v1.0") or base.endswith("/beta")):
            base += "/v1.0"
        self.http = _Http(base, token_getter, client=client, retry=retry, service="Graph")
        self.collection = f"/applications/{self.object_id}/federatedIdentityCredentials"
        self.target = f"app registration {self.object_id}"

    def close(self) -> None:
        self.http.close()

    @staticmethod
    def _from_json(d: dict[str, Any]) -> Fic:
        return Fic(name=d.get("name") or "", issuer=d.get("issuer") or "", subject=d.get("subject") or "",
                   audiences=tuple(d.get("audiences") or ()), description=d.get("description") or "",
                   id=d.get("id"))

    def list(self) -> list[Fic]:
        """GET the collection, following ``@odata.nextLink``."""
        out: list[Fic] = []
        url: str | None = self.collection
        while url:
            resp = self.http.request("GET", url)
            if resp.status_code != 200:
                raise self.http.fail("GET", url, resp, f"listing FICs of {self.target}")
            body = resp.json()
            out.extend(self._from_json(v) for v in body.get("value", []))
            url = body.get("@odata.nextLink")
        return out

    def create(self, fic: Fic) -> Fic:
        """POST a new FIC (201). A lost response is checked by listing before reporting failure."""
        validate_fic(fic)
        body = {"name": fic.name, "issuer": fic.issuer, "subject": fic.subject, "audiences": list(fic.audiences)}
        if fic.description:
            body["description"] = fic.description
        try:
            resp = self.http.request("POST", self.collection, json_body=body, idempotent=False)
        except ServiceError:
            resp = None  # the connection failed: the POST may or may not have been processed
        if resp is not None and resp.status_code in (200, 201):
            return self._from_json(resp.json())
        if resp is None or resp.status_code in (400, 409):  # lost answer, or a concurrent/duplicate create
            for existing in self.list():
                if existing.name == fic.name and existing.same_values(fic):
                    return existing
        if resp is None:
            raise ServiceError(f"Graph POST {self.collection} failed (connection lost) while creating FIC "
                               f"{fic.name!r}; check {self.http.base_url} is reachable and run again")
        raise self.http.fail("POST", self.collection, resp, f"creating FIC {fic.name!r}")

    def delete(self, fic: Fic) -> bool:
        """DELETE by object id (looked up by name when missing). Returns False when it was already gone."""
        fid = fic.id
        if not fid:
            found = [f for f in self.list() if f.name.casefold() == fic.name.casefold()]
            if not found:
                return False
            fid = found[0].id
        url = f"{self.collection}/{quote(str(fid), safe='')}"
        resp = self.http.request("DELETE", url)
        if resp.status_code == 404:
            return False
        if resp.status_code not in (200, 204):
            raise self.http.fail("DELETE", url, resp, f"deleting FIC {fic.name!r}")
        return True


_UAMI_LOCKS: dict[str, threading.Lock] = {}
_UAMI_LOCKS_GUARD = threading.Lock()


def _uami_lock(resource_id: str) -> threading.Lock:
    key = resource_id.casefold()
    with _UAMI_LOCKS_GUARD:
        return _UAMI_LOCKS.setdefault(key, threading.Lock())


class ArmFicClient(FicClient):
    """FICs of a user-assigned managed identity through Azure Resource Manager.

    Writes (PUT/DELETE) to one UAMI are serialised by a process-wide lock per resource id, and a 409
    ``ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity`` (another writer elsewhere)
    is retried with back-off (Entra: "create FICs on the same identity sequentially").

    Args:
        arm_url: ``https://management.azure.com`` (or sovereign/emulator base).
        uami_resource_id: ``/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/
            userAssignedIdentities/{name}``.
    """

    kind = "uami"

    def __init__(self, arm_url: str, uami_resource_id: str, token_getter: TokenGetter, *,
                 client: httpx.Client | None = None, retry: RetryPolicy | None = None,
                 api_version: str = ARM_API_VERSION):
        rid = str(uami_resource_id or "").rstrip("/")
        if not _UAMI_RE.match(rid):
            raise ConfigError(
                f"[identity] uami_resource_id {uami_resource_id!r} is not a user-assigned identity resource ID; use "
                "/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.ManagedIdentity/"
                "userAssignedIdentities/<name> (az identity show --query id)")
        self.resource_id = rid
        self.http = _Http(arm_url, token_getter, client=client, retry=retry, service="ARM")
        self.api_version = api_version
        self.collection = f"{rid}/federatedIdentityCredentials"
        self.target = f"managed identity {rid}"
        self._lock = _uami_lock(rid)

    def close(self) -> None:
        self.http.close()

    @staticmethod
    def _from_json(d: dict[str, Any]) -> Fic:
        p = d.get("properties") or {}
        return Fic(name=d.get("name") or "", issuer=p.get("issuer") or "", subject=p.get("subject") or "",
                   audiences=tuple(p.get("audiences") or ()), description="", id=d.get("id"))

    def _item(self, name: str) -> str:
        return f"{self.collection}/{quote(name, safe='')}"

    def list(self) -> list[Fic]:
        """GET the collection, following ``nextLink``."""
        out: list[Fic] = []
        url: str | None = self.collection
        params: dict[str, str] | None = {"api-version": self.api_version}
        while url:
            resp = self.http.request("GET", url, params=params)
            if resp.status_code != 200:
                raise self.http.fail("GET", url, resp, f"listing FICs of {self.target}")
            body = resp.json()
            out.extend(self._from_json(v) for v in body.get("value", []))
            url = body.get("nextLink")
            params = None  # nextLink carries its own query
        return out

    def create(self, fic: Fic) -> Fic:
        """PUT the FIC (201 created / 200 updated). ARM has no description field."""
        validate_fic(fic)
        body = {"properties": {"issuer": fic.issuer, "subject": fic.subject, "audiences": list(fic.audiences)}}
        url = self._item(fic.name)
        with self._lock:
            resp = self.http.request("PUT", url, json_body=body, params={"api-version": self.api_version},
                                     retry_codes=(ARM_CONCURRENT_CODE,))
        if resp.status_code not in (200, 201):
            raise self.http.fail("PUT", url, resp, f"creating FIC {fic.name!r}")
        return self._from_json(resp.json())

    def delete(self, fic: Fic) -> bool:
        """DELETE by name: 200 deleted, 204 not there (returns False)."""
        url = self._item(fic.name)
        with self._lock:
            resp = self.http.request("DELETE", url, params={"api-version": self.api_version},
                                     retry_codes=(ARM_CONCURRENT_CODE,))
        if resp.status_code in (204, 404):
            return False
        if resp.status_code != 200:
            raise self.http.fail("DELETE", url, resp, f"deleting FIC {fic.name!r}")
        return True


def client_from_settings(identity: Any, *, environ: dict[str, str] | None = None,
                         token_getter: TokenGetter | None = None, retry: RetryPolicy | None = None,
                         http_client: httpx.Client | None = None) -> FicClient:
    """Build the FIC client for ``settings.identity`` (:class:`ppmi_build.config.IdentitySettings`).

    Raises:
        ConfigError: missing ``application_object_id`` / ``uami_resource_id``, or no endpoint for the cloud.
    """
    cloud = getattr(identity, "cloud", "public") or "public"
    if identity.fic_target == "uami":
        if not identity.uami_resource_id:
            raise ConfigError("[identity] fic_target = \"uami\" needs uami_resource_id (the UAMI's resource ID, "
                              "`az identity show --query id`)")
        base = identity.arm_url or ARM_URLS.get(cloud)
        if not base:
            raise ConfigError(f"cloud {cloud!r} has no default ARM endpoint; set [identity] arm_url")
        return ArmFicClient(base, identity.uami_resource_id, token_getter or default_token_getter("arm", environ),
                            retry=retry, client=http_client)
    if not identity.application_object_id:
        raise ConfigError("[identity] fic_target = \"app\" needs application_object_id (the app registration's "
                          "Object ID, not its client ID)")
    base = identity.graph_url or GRAPH_URLS.get(cloud)
    if not base:
        raise ConfigError(f"cloud {cloud!r} has no default Graph endpoint; set [identity] graph_url")
    return GraphFicClient(base, identity.application_object_id,
                          token_getter or default_token_getter("graph", environ), retry=retry, client=http_client)


# --- ensure / remove ----------------------------------------------------------------------------


@dataclass
class EnsureResult:
    """What :func:`ensure_fic` found or did.

    Attributes:
        status: ``"unchanged"`` (exact FIC present), ``"created"``, or ``"planned"`` (would create).
        fic: the FIC that now exists (or would be created).
        notes: human remarks (case-only differences, renamed because the name was taken).
        existing: the FICs listed before any write.
    """

    status: str
    fic: Fic
    notes: list[str] = field(default_factory=list)
    existing: list[Fic] = field(default_factory=list)


def ensure_fic(client: FicClient, desired: Fic, *, apply: bool = True, existing: list[Fic] | None = None,
               keep: Iterable[Fic] = ()) -> EnsureResult:
    """Make sure a FIC with exactly ``desired``'s issuer, subject and audience exists on the identity.

    Matching is case-sensitive; a FIC that differs only in case is reported in ``notes`` and a correct
    one is added. When ``desired.name`` is taken by a FIC with other values, the name gets a ``-2``,
    ``-3`` … suffix (names are immutable; we never change a FIC we did not ask for). The 20-FIC cap is
    counted before creating.

    Args:
        apply: False = plan only: list, decide, write nothing.
        existing: the current FICs when the caller already listed them.
        keep: FICs not to propose for removal in a cap refusal.
    Raises:
        PlanRefused: the cap would be exceeded (also in plan mode).
        ServiceError/AuthError: Graph/ARM failures; CheckFailed when Entra refuses a case-only duplicate.
    """
    existing = client.list() if existing is None else existing
    validate_fic(desired)
    m = match_fic(existing, desired)
    notes: list[str] = []
    if m.case_only:
        notes.append(case_only_message(desired, m.case_only))
    if m.exact is not None:
        return EnsureResult("unchanged", m.exact, notes, existing)
    target = desired
    if m.name_taken is not None:
        taken = {f.name.casefold() for f in existing}
        n = 2
        while f"{desired.name}-{n}".casefold() in taken:
            n += 1
        target = Fic(name=f"{desired.name}-{n}"[:120], issuer=desired.issuer, subject=desired.subject,
                     audiences=desired.audiences, description=desired.description)
        notes.append(f"FIC name {desired.name!r} is used by a FIC with other values; using {target.name!r}")
    client.check_capacity(existing, 1, keep=list(keep) + [target])
    if not apply:
        return EnsureResult("planned", target, notes, existing)
    try:
        created = client.create(target)
    except ServiceError as e:
        if m.case_only and e.status in (400, 409):
            raise CheckFailed(f"{client.target} refused FIC {target.name!r}: {e.message}. {notes[0]}",
                              code="FIC_CASE") from None
        raise
    return EnsureResult("created", created, notes, existing)
