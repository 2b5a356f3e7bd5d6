"""How Graph addresses and renders the federated identity credentials of an app registration (Graph v1.0
``federatedIdentityCredential`` reference; rules in :mod:`ppmi_build.emulator.entra.models`, domain-spec §1.7).

The emulator has no application directory: an app addressed by appId is kept apart from one addressed by object
id (in Entra they are two keys of one object).
"""

from __future__ import annotations

GRAPH_CONTEXT = "https://graph.microsoft.com/v1.0/$metadata#applications('{app}')/federatedIdentityCredentials"


def owner(app_id: str, *, by_app_id: bool) -> str:
    """The Entra store owner key of an application (``app:{objectId}`` or ``app:appid:{appId}``)."""
    return f"app:{'appid:' if by_app_id else ''}{app_id}"


def context(app_id: str) -> str:
    """The ``@odata.context`` of the application's FIC collection."""
    return GRAPH_CONTEXT.format(app=app_id)
