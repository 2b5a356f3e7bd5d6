"""Emulated Dataverse Web API: plug-in assemblies, plug-in packages, plug-in types, managed identities and
``WhoAmI`` (domain-spec §2 and §4).

* :mod:`.models` — the tables and their Web API metadata;
* :mod:`.rules` — Dataverse's rules for writes to them (signed-content bind precondition, package contents, …);
* :mod:`.artifacts` — what the emulator reads from uploaded assemblies and packages;
* :mod:`.responses` — request -> response handlers; :mod:`.urls` — their URL patterns;
* :mod:`.probe` — ``GetComponentManagedIdentityFIC``, custom API invocation (the platform and Entra answering the
  ``validate`` probe), ``plugintracelog`` and ``organization.plugintracelogsetting``.
"""

from __future__ import annotations

from ..core.routing import Service
from . import models, responses, urls

SERVICE = Service(name="dataverse", claims=urls.CLAIMS, routes=urls.URLS, not_found=responses.not_found,
                  init_db=models.init_db, control=urls.CONTROL)
