"""Federated identity credentials of a user-assigned managed identity (UAMI) through Azure Resource Manager.

``{arm_url}{uami_resource_id}/federatedIdentityCredentials/{name}?api-version=2023-01-31`` (ARM
``Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials``: ``PUT`` with
``{"properties": {"issuer", "subject", "audiences"}}`` (201/200), ``GET`` list ``{"value": [...], "nextLink"?}``,
``DELETE`` (200/204)). Writes to one UAMI are sequential (Entra FIC considerations, domain-spec §1.7): concurrent
writes get HTTP 409 :data:`ARM_CONCURRENT_CODE`; this client holds one lock per UAMI and retries that 409 with
the policy's back-off.
"""

from __future__ import annotations

import re
import threading
from typing import Any
from urllib.parse import quote

import httpx

from ..errors import ConfigError
from ..http.retry import RetryPolicy
from ..identity.fic_records import Fic, validate_fic
from .base import FicClient, FicHttp, TokenGetter

#: ARM API version of Microsoft.ManagedIdentity used for FICs.
ARM_API_VERSION = "2023-01-31"
#: ARM error code for concurrent FIC writes under one UAMI (seen in Azure/bicep-registry-modules#1447,
#: pulumi/pulumi-azure-native#4343: 409 "Too many Federated Identity Credentials are written concurrently").
ARM_CONCURRENT_CODE = "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity"
#: ARM endpoint per cloud (DESIGN.md §4 ``cloud``). usnat/ussec have no public endpoints: set ``arm_url``.
ARM_URLS = {
    "public": "https://management.azure.com",
    "usgov": "https://management.usgovcloudapi.net",
    "china": "https://management.chinacloudapi.cn",
}
#: a user-assigned managed identity's ARM resource ID
UAMI_RE = re.compile(
    r"^/subscriptions/(?P<sub>[0-9a-fA-F-]{36})/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"Microsoft\.ManagedIdentity/userAssignedIdentities/(?P<name>[^/]+)$",
    re.IGNORECASE,
)


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
        if not UAMI_RE.match(rid):
            raise ConfigError(
                f"[identity] uami_resource_id {uami_resource_id!r} is not a user-assigned identity resource ID; use "
                "/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.ManagedIdentity/"
                "userAssignedIdentities/<name> (az identity show --query id)")
        self.resource_id = rid
        self.http = FicHttp(arm_url, token_getter, client=client, retry=retry, service="ARM")
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
