"""The Dataverse half of ``ppmi-build demo``: register the signed demo assembly in a local
emulator, bind a ``managedidentities`` row to it (version 2), and read back what the emulator holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def register_and_bind(emu, artifact: Path, *, tenant_id: str, application_id: str) -> dict[str, Any]:
    """Run register + bind against ``emu`` (a started :class:`ppmi_build.emulator.Emulator`).

    Returns ``{"url", "actions": [...], "ids": {...}, "bound": {...}}`` where ``bound`` is the
    read-back ``pluginassembly`` row (``managedidentityid``) and ``managedidentities`` row.
    """
    from ..dataverse.actions import ActionLog
    from ..dataverse.client import DataverseClient
    from ..dataverse.managed_identity import IdentitySpec, bind, find_target, read_back
    from ..dataverse.registration import load_artifact, register
    from ..http.tokens import StaticToken

    log = ActionLog()
    art = load_artifact(artifact)
    with DataverseClient(emu.url, StaticToken(emu.token)) as client:
        register(client, art, log=log)
        target = find_target(client, art)
        bind(client, target, IdentitySpec(application_id=application_id, tenant_id=tenant_id, version=2), log=log)
        held = read_back(client, target)
    out = log.to_json()
    out["url"] = emu.url
    out["bound"] = held
    return out
