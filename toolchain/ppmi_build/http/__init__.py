"""The one HTTP layer of ppmi-build, used by the Dataverse Web API client, the Graph/ARM federated identity
credential clients and the RFC 3161 time-stamp client.

* :mod:`.client`: the httpx client factory (:func:`new_client`), the TLS rule for token-bearing URLs
  (:func:`check_url`: https, or http to a loopback host only; RFC 6750 §5.3), ``PPMI_HTTP_TIMEOUT``, the user
  agent, and redaction of credentials in URLs (:func:`redact_url`).
* :mod:`.retry`: the one :class:`RetryPolicy` (429/5xx/transport errors with bounded jittered back-off,
  ``Retry-After`` honoured up to a cap and refused beyond it, RFC 9110 §10.2.3; injectable ``sleep``/``clock``).
* :mod:`.tokens`: bearer tokens by scope (``PPMI_ACCESS_TOKEN``, ``PPMI_GRAPH_TOKEN``, ``PPMI_ARM_TOKEN``, else
  azure-identity) for Dataverse, Graph, ARM, Key Vault and Trusted Signing.

Names are exported lazily (PEP 562), so ``import ppmi_build.http`` does not import httpx or azure-identity.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "CONNECT_TIMEOUT_S": "client", "DEFAULT_TIMEOUT_S": "client", "check_url": "client", "check_urls": "client",
    "env_number": "client", "is_loopback": "client", "new_client": "client", "redact_url": "client",
    "timeout_from_env": "client", "user_agent": "client",
    "NOT_PROCESSED_STATUSES": "retry", "TRANSIENT_STATUSES": "retry", "Outcome": "retry", "RetryEvent": "retry",
    "RetryPolicy": "retry", "attempts_text": "retry", "parse_retry_after": "retry",
    "ARM_SCOPE": "tokens", "GRAPH_SCOPE": "tokens", "KEY_VAULT_SCOPE": "tokens", "TRUSTED_SIGNING_SCOPE": "tokens",
    "AzureIdentityToken": "tokens", "StaticToken": "tokens", "TokenProvider": "tokens",
    "default_token_getter": "tokens", "scope_for": "tokens", "static_token": "tokens", "token_provider": "tokens",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
