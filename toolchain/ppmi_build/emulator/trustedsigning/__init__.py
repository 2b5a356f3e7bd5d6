"""Emulated Azure Trusted Signing (Artifact Signing) data plane: sign operations (202 + poll) over the emulator's
own PKI, seeded with ``--signing-profile ACCOUNT/PROFILE="SUBJECT DN"`` (production-keys §2(b); :mod:`.models`)."""

from __future__ import annotations

from ..core.routing import Service
from . import responses, urls

SERVICE = Service(name="trustedsigning", claims=urls.CLAIMS, routes=urls.URLS, not_found=responses.not_found,
                  authorize=responses.authorize, control=urls.CONTROL)
