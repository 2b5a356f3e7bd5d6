"""Federated identity credentials of an app registration through Microsoft Graph v1.0.

``{graph_url}/v1.0/applications/{application_object_id}/federatedIdentityCredentials`` (Graph
``federatedIdentityCredential`` resource: ``{id, name, issuer, subject, audiences, description}``; ``POST`` creates
(201), ``GET`` lists ``{"value": [...], "@odata.nextLink"?}``, ``DELETE …/{id}`` (204)). Entra's rules are checked
before any write (:func:`ppmi_build.identity.fic_records.validate_fic`, domain-spec §1.7).
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import httpx

from ..errors import ConfigError, ServiceError
from ..http.retry import RetryPolicy
from ..identity.fic_records import Fic, validate_fic
from .base import FicClient, FicHttp, TokenGetter

#: Graph endpoint per cloud (DESIGN.md §4 ``cloud``). usnat/ussec have no public endpoints: set ``graph_url``.
GRAPH_URLS = {
    "public": "https://graph.microsoft.com",
    "usgov": "https://graph.microsoft.us",
    "china": "https://microsoftgraph.chinacloudapi.cn",
}


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
        self.http = FicHttp(base, token_getter, client=client, retry=retry, service="Graph")
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
        except ServiceError as e:
            if e.status is not None:  # an answer (a Retry-After beyond the cap), not a lost connection
                raise
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
