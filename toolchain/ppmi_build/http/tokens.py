"""Bearer tokens by scope (OAuth 2.0 client credentials via Entra ID; RFC 6750 bearer usage): the one place the
Dataverse, Microsoft Graph, Azure Resource Manager, Key Vault and Trusted Signing clients get tokens from.

Scopes: Dataverse ``https://ORG/.default`` where ``ORG`` is the host of the environment URL (domain-spec §6
runtime note: ``https://{org}.crm*.dynamics.com/.default``); :data:`GRAPH_SCOPE`, :data:`ARM_SCOPE`,
:data:`KEY_VAULT_SCOPE` and :data:`TRUSTED_SIGNING_SCOPE` (production-keys research notes) and their sovereign-cloud
hosts.

A :class:`TokenProvider` returns a bearer token for one scope. Providers:

* :class:`StaticToken` — ``PPMI_ACCESS_TOKEN``: a token a pipeline already has (``az account get-access-token``,
  a previous step). No refresh.
* :class:`AzureIdentityToken` — any ``azure-identity`` credential (``get_token(scope)``), with the token cached until
  five minutes before it expires. :func:`azure_credential` builds the credential for a method:

  ==================  ===========================================================================================
  ``default``         ``DefaultAzureCredential`` (environment, workload identity, managed identity, Azure CLI, …)
  ``client-secret``   ``ClientSecretCredential(AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET)``
  ``client-certificate`` ``CertificateCredential(AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_CERTIFICATE_PATH,
                      password=AZURE_CLIENT_CERTIFICATE_PASSWORD)``
  ``workload-identity`` ``WorkloadIdentityCredential`` (``AZURE_FEDERATED_TOKEN_FILE``, AKS and others)
  ``github``          ``ClientAssertionCredential`` whose assertion is the GitHub Actions OIDC token
                      (``ACTIONS_ID_TOKEN_REQUEST_URL`` + ``ACTIONS_ID_TOKEN_REQUEST_TOKEN``, audience
                      ``api://AzureADTokenExchange``; the job needs ``permissions: id-token: write``)
  ``azure-pipelines`` ``AzurePipelinesCredential`` (service connection with workload identity federation:
                      ``AZURESUBSCRIPTION_SERVICE_CONNECTION_ID``, ``AZURESUBSCRIPTION_CLIENT_ID``,
                      ``AZURESUBSCRIPTION_TENANT_ID``, ``SYSTEM_ACCESSTOKEN``)
  ``azure-cli``       ``AzureCliCredential`` (``az login`` on the machine)
  ==================  ===========================================================================================

``PPMI_AUTH`` picks the method; ``auto`` (the default) uses ``PPMI_ACCESS_TOKEN`` when set, else ``github`` inside
GitHub Actions with OIDC available, else ``azure-pipelines`` inside Azure Pipelines with a federated service
connection, else ``default``.

``azure-identity`` is an optional dependency (``pip install 'ppmi-build[azure]'``), imported only when needed.
Tokens never appear in messages or logs. The ``azure.identity`` / ``azure.core`` / ``msal`` loggers are silenced
(their per-credential WARNING/INFO lines, and msal's logged tracebacks, would flood stderr; the failure itself is
reported as one line) unless the command runs with ``-v``.

Static tokens (``PPMI_ACCESS_TOKEN`` for every scope; ``PPMI_GRAPH_TOKEN`` / ``PPMI_ARM_TOKEN`` first for Graph /
ARM, :func:`static_token`, :func:`default_token_getter`): surrounding white space and a ``Bearer `` prefix are
removed. A variable that is set but empty (what a CI template passes for a secret that is not defined) counts as not
set: one note on stderr says so, then the next source is used. A token with characters a bearer token cannot have
(RFC 6750 §2.1 ``b64token``: visible ASCII only; here: anything outside ``!``..``~``, e.g. non-ASCII, spaces,
control characters) is a :class:`~ppmi_build.errors.ConfigError` naming the variable, never showing the value.

Errors: *no credential configured* (azure-identity ``CredentialUnavailableError``, or ``DefaultAzureCredential`` /
a credential chain in which every member was unavailable) is a :class:`~ppmi_build.errors.ConfigError` (exit 2)
naming ``PPMI_ACCESS_TOKEN`` and the ``PPMI_AUTH`` methods; a configured credential that is refused (or whose
token endpoint fails) is an :class:`~ppmi_build.errors.AuthError` (exit 3).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..errors import AuthError, ConfigError, redact

METHODS = ("auto", "static", "default", "client-secret", "client-certificate", "workload-identity", "github",
           "azure-pipelines", "azure-cli")
GITHUB_AUDIENCE = "api://AzureADTokenExchange"
REFRESH_MARGIN_S = 300

#: Microsoft Graph (public cloud)
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
#: Azure Resource Manager (public cloud)
ARM_SCOPE = "https://management.azure.com/.default"
#: Azure Key Vault data plane (keys/sign, certificates/get)
KEY_VAULT_SCOPE = "https://vault.azure.net/.default"
#: Azure Trusted Signing (Artifact Signing) data plane
TRUSTED_SIGNING_SCOPE = "https://codesigning.azure.net/.default"
#: the static-token variable tried before ``PPMI_ACCESS_TOKEN`` per service kind
KIND_VARIABLES = {"graph": "PPMI_GRAPH_TOKEN", "arm": "PPMI_ARM_TOKEN"}


class TokenProvider(Protocol):
    """Something that returns a bearer token (str) for the scope it was made for."""

    def token(self) -> str: ...

    @property
    def description(self) -> str: ...


def _strip_token(value: str) -> str:
    value = value.strip()
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    return value


def _blank(value: str | None) -> bool:
    """True for a token variable that is unset, empty, white space or only the word ``Bearer``."""
    return not value or _strip_token(value).lower() in ("", "bearer")


def clean_token(value: str, source: str = "PPMI_ACCESS_TOKEN") -> str:
    """``value`` without surrounding white space and ``Bearer `` prefix, checked for characters a bearer token
    cannot have (RFC 6750 §2.1: ``b64token`` is visible ASCII; an HTTP header value cannot carry non-ASCII).

    Raises:
        ConfigError: empty, or a character outside ``!``..``~`` (named by kind and position, never shown).
    """
    if _blank(value):
        raise ConfigError(f"{source} is empty; set it to an access token for the environment or unset it")
    value = _strip_token(value)
    for i, ch in enumerate(value):
        if not "!" <= ch <= "~":
            what = "a non-ASCII character" if not ch.isascii() else "a space" if ch == " " else "a control character"
            raise ConfigError(f"{source} holds characters an access token cannot have ({what} at position {i + 1} "
                              "of its value); set it to the token alone, e.g. the accessToken printed by "
                              "`az account get-access-token`")
    return value


#: variables already reported as set-but-empty in this process (the note is printed once per variable)
_NOTED_EMPTY: set[str] = set()


def _note_empty(name: str) -> None:
    if name in _NOTED_EMPTY:
        return
    _NOTED_EMPTY.add(name)
    print(f"note: {name} is set but empty; ignoring it (unset it, or set it to an access token)",
          file=sys.stderr)


def env_token(env: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    """The first static token among the variables ``names``: ``(token, variable name)``, or None.

    A variable that is set but empty (or only white space / ``Bearer``) is skipped with a note on stderr
    (once per process). Raises ConfigError for a token with characters a token cannot have (:func:`clean_token`).
    """
    for name in names:
        raw = env.get(name)
        if raw is None:
            continue
        if _blank(raw):
            _note_empty(name)
            continue
        return clean_token(raw, name), name
    return None


class StaticToken:
    """A fixed token (``PPMI_ACCESS_TOKEN``). ``repr``/``description`` never show it.

    Raises:
        ConfigError: the value is empty or holds characters a token cannot have (:func:`clean_token`).
    """

    def __init__(self, value: str, source: str = "PPMI_ACCESS_TOKEN"):
        self._value = clean_token(value, source)
        self._source = source

    def token(self) -> str:
        return self._value

    @property
    def description(self) -> str:
        return f"static token from {self._source}"

    def __repr__(self) -> str:
        return f"<StaticToken from {self._source}>"


_UNAVAILABLE, _FAILED = "unavailable", "failed"


def _service(scope: str) -> str:
    host = urlsplit(scope).netloc.lower()
    if host.startswith("graph.") or host.startswith("microsoftgraph."):
        return "Graph"
    if host.startswith("management."):
        return "ARM"
    if host.startswith("vault.") or ".vault." in host:
        return "Key Vault"
    if host.startswith("codesigning."):
        return "Trusted Signing"
    return "Dataverse"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_unavailable(exc: BaseException) -> bool:
    try:
        from azure.identity import CredentialUnavailableError
    except ImportError:  # pragma: no cover - only reached with azure-identity installed
        return False
    return isinstance(exc, CredentialUnavailableError)


def no_credentials_message(scope: str, label: str) -> str:
    """The one-line ConfigError text when no credential is configured for ``scope``."""
    extra = {"Graph": "PPMI_GRAPH_TOKEN or ", "ARM": "PPMI_ARM_TOKEN or "}.get(_service(scope), "")
    return (f"no {_service(scope)} credentials: {label} found none configured for {scope}; set {extra}"
            "PPMI_ACCESS_TOKEN to an access token, or PPMI_AUTH to client-secret, client-certificate, "
            "workload-identity, github, azure-pipelines or azure-cli with its AZURE_* variables "
            "(see docs/usage/dataverse.md)")


class AzureIdentityToken:
    """Wraps an azure-identity ``TokenCredential``; caches the token until ``expires_on - 5 min``.

    ``token()`` raises :class:`ConfigError` when no credential is available (nothing configured) and
    :class:`AuthError` when a configured credential fails; the members of a credential chain
    (``DefaultAzureCredential``, ``ChainedTokenCredential``: attribute ``credentials``) are watched to tell the two
    apart, because the chain raises the same ``ClientAuthenticationError`` for both.
    """

    def __init__(self, credential: Any, scope: str, description: str = "azure-identity"):
        self._credential = credential
        self._scope = scope
        self._description = description
        self._cached: tuple[str, float] | None = None
        self._lock = threading.Lock()
        #: per get_token call: (unavailable|failed, "CredentialClass: first line of its error") per chain member
        self._outcomes: list[tuple[str, str]] = []
        self._watch_chain()

    def _watch_chain(self) -> None:
        """Record, per ``get_token`` call, whether each chain member was unavailable or failed (both the
        ``get_token`` and the ``get_token_info`` entry points are watched: the chain calls one of them)."""
        members = getattr(self._credential, "credentials", None)
        if not isinstance(members, (tuple, list)):
            return
        for member in members:
            for method in ("get_token", "get_token_info"):
                original = getattr(member, method, None)
                if original is None or getattr(original, "_ppmi_watched", False):
                    continue

                def watched(*args: Any, _original: Any = original, _member: Any = member,
                            _outcomes: list[tuple[str, str]] = self._outcomes, **kwargs: Any) -> Any:
                    try:
                        return _original(*args, **kwargs)
                    except Exception as e:
                        text = f"{type(_member).__name__}: {_first_line(e)}"
                        _outcomes.append((_UNAVAILABLE if _is_unavailable(e) else _FAILED, text))
                        raise

                watched._ppmi_watched = True  # type: ignore[attr-defined]
                try:
                    setattr(member, method, watched)
                except (AttributeError, TypeError):  # pragma: no cover - a credential with __slots__
                    continue

    @property
    def scope(self) -> str:
        return self._scope

    @property
    def description(self) -> str:
        return f"{self._description} (scope {self._scope})"

    def token(self) -> str:
        with self._lock:
            if self._cached and self._cached[1] - REFRESH_MARGIN_S > time.time():
                return self._cached[0]
            self._outcomes.clear()
            try:
                tok = self._credential.get_token(self._scope)
            except Exception as e:  # azure.core.exceptions.ClientAuthenticationError and friends
                chain_unavailable = bool(self._outcomes) and all(o == _UNAVAILABLE for o, _ in self._outcomes)
                if _is_unavailable(e) or chain_unavailable:
                    raise ConfigError(no_credentials_message(self._scope, self._description)) from None
                # a chain's own message only says it failed: name the member that was refused
                msg = next((text for o, text in self._outcomes if o == _FAILED), None) or _first_line(e)
                raise AuthError(f"could not get an access token for {self._scope} with {self._description}: "
                                f"{redact(msg)}; check the credentials (PPMI_AUTH, AZURE_* variables, az login)",
                                status=None) from None
            self._cached = (tok.token, float(tok.expires_on))
            return tok.token

    def __repr__(self) -> str:
        return f"<AzureIdentityToken {self._description} scope={self._scope}>"


def scope_for(url: str) -> str:
    """``https://contoso.crm.dynamics.com/...`` -> ``https://contoso.crm.dynamics.com/.default``."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise ConfigError(f"environment url {url!r} is not an absolute URL; use https://ORG.crm.dynamics.com")
    return f"{parts.scheme}://{parts.netloc}/.default"


def _require(env: Mapping[str, str], *names: str, method: str) -> list[str]:
    missing = [n for n in names if not env.get(n)]
    if missing:
        raise ConfigError(f"PPMI_AUTH={method} needs {', '.join(missing)}; set them (see docs/usage/dataverse.md)")
    return [env[n] for n in names]


def _import_identity():
    try:
        import azure.identity as identity  # noqa: PLC0415 - optional dependency, imported lazily
    except ImportError:
        raise ConfigError("no Dataverse credentials: set PPMI_ACCESS_TOKEN to an access token, or install "
                          "azure-identity (pip install 'ppmi-build[azure]') and configure PPMI_AUTH") from None
    return identity


def github_oidc_assertion(env: Mapping[str, str], *, http_get: Callable[..., Any] | None = None) -> Callable[[], str]:
    """A callable returning a fresh GitHub Actions OIDC token (audience ``api://AzureADTokenExchange``).

    GitHub documents the request: GET ``$ACTIONS_ID_TOKEN_REQUEST_URL&audience=...`` with
    ``Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN``; the JSON answer's ``value`` is the JWT.
    """
    url, req_token = _require(env, "ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN", method="github")

    def assertion() -> str:
        import httpx

        get = http_get or httpx.get
        sep = "&" if "?" in url else "?"
        try:
            resp = get(f"{url}{sep}audience={GITHUB_AUDIENCE}", headers={"Authorization": f"bearer {req_token}"},
                       timeout=30)
            resp.raise_for_status()
            return resp.json()["value"]
        except Exception as e:
            raise AuthError(f"could not get the GitHub Actions OIDC token ({type(e).__name__}); give the job "
                            "'permissions: id-token: write'") from None

    return assertion


def azure_credential(method: str, env: Mapping[str, str]) -> tuple[Any, str]:
    """Build the azure-identity credential for ``method`` (see the module docstring) -> (credential, label).

    Raises:
        ConfigError: azure-identity missing, unknown method, or a required variable is not set.
    """
    identity = _import_identity()
    if method == "default":
        return identity.DefaultAzureCredential(), "DefaultAzureCredential"
    if method == "client-secret":
        t, c, s = _require(env, "AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", method=method)
        return identity.ClientSecretCredential(t, c, s), "ClientSecretCredential"
    if method == "client-certificate":
        t, c, p = _require(env, "AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_CERTIFICATE_PATH", method=method)
        return (identity.CertificateCredential(t, c, certificate_path=p,
                                               password=env.get("AZURE_CLIENT_CERTIFICATE_PASSWORD") or None),
                "CertificateCredential")
    if method == "workload-identity":
        t, c, f = _require(env, "AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE", method=method)
        return identity.WorkloadIdentityCredential(tenant_id=t, client_id=c, token_file_path=f), \
            "WorkloadIdentityCredential"
    if method == "github":
        t, c = _require(env, "AZURE_TENANT_ID", "AZURE_CLIENT_ID", method=method)
        return identity.ClientAssertionCredential(t, c, github_oidc_assertion(env)), \
            "ClientAssertionCredential (GitHub Actions OIDC)"
    if method == "azure-pipelines":
        sc, c, t, tok = _require(env, "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID", "AZURESUBSCRIPTION_CLIENT_ID",
                                 "AZURESUBSCRIPTION_TENANT_ID", "SYSTEM_ACCESSTOKEN", method=method)
        return (identity.AzurePipelinesCredential(tenant_id=t, client_id=c, service_connection_id=sc,
                                                  system_access_token=tok), "AzurePipelinesCredential")
    if method == "azure-cli":
        return identity.AzureCliCredential(), "AzureCliCredential"
    raise ConfigError(f"PPMI_AUTH={method!r} is not known; use one of {', '.join(METHODS)}")


def detect_method(env: Mapping[str, str]) -> str:
    """The method ``auto`` resolves to (see the module docstring)."""
    if not _blank(env.get("PPMI_ACCESS_TOKEN")):
        return "static"
    if env.get("ACTIONS_ID_TOKEN_REQUEST_URL") and env.get("AZURE_CLIENT_ID") and env.get("AZURE_TENANT_ID"):
        return "github"
    if env.get("AZURESUBSCRIPTION_SERVICE_CONNECTION_ID") and env.get("SYSTEM_ACCESSTOKEN"):
        return "azure-pipelines"
    return "default"


def token_provider(url: str, *, method: str | None = None, environ: Mapping[str, str] | None = None,
                   credential: Any = None) -> TokenProvider:
    """The provider for resource ``url`` (scope ``https://HOST/.default``).

    Args:
        url: the environment (or Graph / ARM) base URL the token is for.
        method: one of :data:`METHODS`; default ``PPMI_AUTH`` or ``auto``.
        environ: environment mapping (default ``os.environ``).
        credential: an azure-identity ``TokenCredential`` to use as it is (overrides ``method``).
    Raises:
        ConfigError: no usable credentials (message says what to set); ``PPMI_ACCESS_TOKEN`` holds characters a
            token cannot have. A set-but-empty ``PPMI_ACCESS_TOKEN`` counts as not set (one note on stderr).
    """
    env = os.environ if environ is None else environ
    scope = scope_for(url)
    if credential is not None:
        return AzureIdentityToken(credential, scope, type(credential).__name__)
    method = (method or env.get("PPMI_AUTH") or "auto").strip().lower()
    if method not in METHODS:
        raise ConfigError(f"PPMI_AUTH={method!r} is not known; use one of {', '.join(METHODS)}")
    if method in ("auto", "static"):
        found = env_token(env, "PPMI_ACCESS_TOKEN")  # set but empty: noted once, then treated as not set
        if found is not None:
            return StaticToken(found[0])
        if method == "static":
            raise ConfigError("PPMI_AUTH=static needs PPMI_ACCESS_TOKEN; set it to an access token for "
                              f"{scope}")
        method = detect_method(env)
    cred, label = azure_credential(method, env)
    return AzureIdentityToken(cred, scope, label)


def static_token(kind: str, environ: Mapping[str, str] | None = None) -> str | None:
    """``PPMI_GRAPH_TOKEN`` (kind ``graph``) / ``PPMI_ARM_TOKEN`` (kind ``arm``), else ``PPMI_ACCESS_TOKEN``, else
    None. A variable that is set but empty counts as not set (one note on stderr); white space and a ``Bearer``
    prefix are removed (:func:`env_token`).

    Raises:
        ConfigError: the token holds characters a token cannot have (non-ASCII, spaces, control characters):
            the message names the variable, never the value.
    """
    env = os.environ if environ is None else environ
    names = (KIND_VARIABLES[kind], "PPMI_ACCESS_TOKEN") if kind in KIND_VARIABLES else ("PPMI_ACCESS_TOKEN",)
    found = env_token(env, *names)
    return found[0] if found else None


def default_token_getter(kind: str, environ: Mapping[str, str] | None = None) -> Callable[[str], str]:
    """A function ``scope -> token`` for a service kind (``graph``, ``arm``, or any other name for
    ``PPMI_ACCESS_TOKEN`` alone).

    Order: the static variables of :func:`static_token`; then :func:`token_provider` (``PPMI_AUTH``,
    azure-identity) asked for the scope.

    Raises (when called):
        ConfigError / AuthError: no usable credentials, or a static token with characters a token cannot have
            (the message says what to set).
    """

    def getter(scope: str) -> str:
        token = static_token(kind, environ)
        if token:
            return token
        base = scope[: -len("/.default")] if scope.endswith("/.default") else scope
        return token_provider(base, environ=environ).token()

    return getter
