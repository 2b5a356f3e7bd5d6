"""Emulated Azure Resource Manager: the federated identity credentials of user-assigned managed identities
(``Microsoft.ManagedIdentity`` 2023-01-31 REST reference; domain-spec §1.7). The credentials live in the shared
Entra store (:mod:`ppmi_build.emulator.entra.models`).
"""

from __future__ import annotations

from ..core.routing import Service
from ..entra.models import init_db
from . import responses, urls

SERVICE = Service(name="arm", claims=urls.CLAIMS, routes=urls.URLS, not_found=responses.not_found,
                  authorize=responses.authorize, init_db=init_db)
