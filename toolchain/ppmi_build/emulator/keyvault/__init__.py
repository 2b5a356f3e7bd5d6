"""Emulated Azure Key Vault data plane: a code-signing certificate and its key, for rehearsing
``--key keyvault:http://127.0.0.1:PORT/certificates/NAME`` offline (production-keys §2(a)).

``GET /certificates/{name}[/{version}]`` answers the certificate bundle (``cer`` = the leaf, ``kid``);
``POST /keys/{name}/{version}/sign`` signs a digest with RS256/RS384/RS512 (RSASSA-PKCS1-v1_5); the private key
never leaves the emulator. Seeded with ``ppmi-build emulator --vault-certificate NAME=PFX`` (option
``vault_certificates`` of :func:`ppmi_build.emulator.start`, see :mod:`.models`).
"""

from __future__ import annotations

from ..core.routing import Service
from . import responses, urls

SERVICE = Service(name="keyvault", claims=urls.CLAIMS, routes=urls.URLS, not_found=responses.not_found,
                  authorize=responses.authorize)
