"""URL patterns of the emulated ARM surface (``Microsoft.ManagedIdentity`` 2023-01-31 REST reference)."""

from __future__ import annotations

import re

from ..core.routing import Route
from . import responses

CLAIMS = re.compile(r"^/subscriptions/")

URLS: tuple[Route, ...] = (
    Route(re.compile(
        r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.ManagedIdentity/"
        r"userAssignedIdentities/(?P<uami>[^/]+)/federatedIdentityCredentials(?:/(?P<name>[^/]+))?/?$",
        re.IGNORECASE), responses.federated_identity_credentials),
)
