"""URL patterns of the emulated Graph surface (Graph v1.0 ``federatedIdentityCredential`` reference)."""

from __future__ import annotations

import re

from ..core.routing import Route
from . import responses

CLAIMS = re.compile(r"^/v1\.0/")

URLS: tuple[Route, ...] = (
    # …/federatedIdentityCredentials, …/{id}, …(name='{name}') (alternate key); app by object id or (appId='…')
    Route(re.compile(
        r"^/v1\.0/applications(?:/(?P<app>[^/()]+)|\(appId='(?P<appid>[^']+)'\))/federatedIdentityCredentials"
        r"(?:\(name='(?P<key>[^']*)'\)|/(?P<item>[^/]+))?/?$", re.IGNORECASE),
        responses.federated_identity_credentials, decoded=True),
)
