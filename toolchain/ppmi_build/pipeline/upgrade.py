"""``ppmi-build upgrade --env NAME --to 2 [--plan] [--retire-old] [ARTIFACT]``: move a ``managedidentities``
record from version 0 or 1 to 2 without rebuilding or re-registering the plug-in.

This is Microsoft's manual upgrade (domain-spec §2.5, [MS-V2] "Upgrade to version 2", Option 2), done from any OS
and for app registrations (Graph) and user-assigned managed identities (ARM), which ``pac managed-identity
upgrade-version`` does not support:

1. read the component, the certificate that signed the content Dataverse holds, and the bound record's
   ``version`` (null = 0);
2. compute the version 2 FIC for that certificate and **add** it (the old FIC stays; cap counted first);
3. ``PATCH managedidentities(<id>) {"version": 2}``;
4. verify: the record holds version 2 and the v2 FIC matches the signer of the held content; on any failure
   after the v2 FIC was added (the PATCH, the verification) the version is set back (as ``pac …
   --revert-version`` would) and the v2 FIC this run created is removed again;
5. keep the old FIC until the plug-in is confirmed working; ``--retire-old`` (a later run) removes the FICs of
   versions 0/1 for that certificate once the record is at version 2.

Lowering a record (``--to 0`` or ``--to 1``) is never done implicitly (``bind``/``release`` refuse it); it needs
``--force`` and runs the same steps: the FIC of the lower version for the held signer is added first (the version
2 FIC stays), then the version is set, then verified.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import entra
from ..errors import BadInput, PpmiError
from . import plan as P
from .plan import Plan
from .release import EnvironmentTarget, Run, attach, desired_fic, held_content, signer_of_bytes
from .rotate import current_component

SUPPORTED_TARGETS = (2,)
#: versions reachable only with ``force`` (lowering a record; the FIC of that version is restored first)
FORCED_TARGETS = (0, 1)


def run_upgrade(env_name: str, to: int = 2, artifact: Path | str | None = None, *, plan_only: bool = False,
                retire_old: bool = False, force: bool = False, start: Path | str | None = None,
                environ: dict[str, str] | None = None,
                progress: Callable[[str], None] | None = None, settings: Any = None) -> Plan:
    """Upgrade the managed identity record bound to the plug-in in ``env_name`` to version ``to`` (2).

    Raises:
        BadInput: ``to`` is not 2; nothing registered or bound. PlanRefused: FIC cap. CheckFailed: verification
        (the version was set back). Service errors. The partial plan is attached as ``err.plan``.
    """
    from ..config import load_settings

    plan = Plan("upgrade", env_name, apply=not plan_only, progress=progress)
    try:
        if int(to) not in SUPPORTED_TARGETS and not (force and int(to) in FORCED_TARGETS):
            raise BadInput(f"--to {to}: only version 2 is a supported target (version 0 is deprecated, version 1 "
                           "is CN-based); use --to 2, or add --force to lower a record on purpose")
        settings = settings or load_settings(start, environ=environ)
        target = EnvironmentTarget.load(settings, env_name)
        with Run(plan, target, environ) as run:
            _upgrade(run, int(to), Path(artifact) if artifact is not None else None, retire_old=retire_old,
                     force=force)
    except PpmiError as e:
        raise attach(e, plan) from None
    return plan


def _upgrade(run: Run, to: int, artifact: Path | None, *, retire_old: bool, force: bool = False) -> None:
    from ..dataverse.managed_identity import MI_SELECT, read_back

    plan, target = run.plan, run.target
    with plan.step("read", target.url, "reading the component, its signer and its managed identity record"):
        component = current_component(run, artifact)
        held = read_back(run.dv, component)
        mi = held.get("managedidentity")
        if not mi:
            raise BadInput(f"{component.label} is not bound to a managed identity in {target.url}; run "
                           f"`ppmi-build release --env {target.name}` (it creates a version {target.version} record)")
        content = held_content(run.dv, component.entity_set, component.id)
        if content is None:
            raise BadInput(f"{component.label} holds no content in {target.url}")
        signer = signer_of_bytes(content, "package" if component.kind == "pluginpackage" else "assembly")
    mid = mi["managedidentityid"]
    raw_version = mi.get("version")
    current = int(raw_version or 0)
    shown = "null" if raw_version is None else raw_version
    plan.set_id(component.kind, component.id)
    plan.set_id("managedidentity", mid)
    plan.extra["from_version"] = raw_version
    plan.extra["to_version"] = to
    if current > to and not force:
        raise BadInput(f"managedidentities({mid}) is at version {current}, newer than --to {to}; nothing to do "
                       "(add --force to lower it)")

    # 2. the v2 FIC, added next to the old one
    old_fics = [desired_fic(target, signer, version=v) for v in (0, 1) if v < to]
    res = run.ensure_fic(signer, version=to, keep=tuple(old_fics))
    created_fic = res.fic if res.status == P.CREATED else None

    # 3. the record's version; 4. verify. Any failure after the FIC was added: version set back, FIC removed.
    label = mi.get("name") or f"managedidentities({mid})"
    try:
        if current == to:
            plan.add("managedidentity", label, P.UNCHANGED, id=mid, detail=f"version {raw_version}")
        elif not plan.apply:
            plan.add("managedidentity", label, P.PLANNED, id=mid, detail=f"version {shown} -> {to}")
        else:
            with plan.step("managedidentity", label, f"setting managedidentities({mid}) version {shown} -> {to}"):
                run.dv.update("managedidentities", mid, {"version": to}, select=MI_SELECT)
            plan.add("managedidentity", label, P.UPDATED, id=mid, detail=f"version {shown} -> {to}")
        if plan.apply:
            run.verify_dataverse(component, expected=None, version=to)
    except (Exception, KeyboardInterrupt) as err:
        if plan.apply:
            outcome = _rollback(run, mid, label, current, to, raw_version, created_fic)
            if isinstance(err, PpmiError):
                err.message += outcome
            else:
                plan.progress(f"[upgrade] {outcome.lstrip('; ')}")
        raise
    if target.version != to:
        where = target.settings.config_file or (Path(target.settings.root) / "ppmi.toml")
        plan.next_step(f"set [identity] version in {where} to {to}, so that `ppmi-build release` keeps the record "
                       f"at version {to} (it is {target.version}); the line:\n    version = {to}")

    # 5. the old FICs: kept until the plug-in is confirmed working at the new version, i.e. a later run
    existing = run.fic.list()
    new_fic = desired_fic(target, signer, version=to)
    stale: list[entra.Fic] = []
    for old in old_fics:
        m = entra.match_fic(existing, old).exact
        if m is not None and not m.same_values(new_fic) and m not in stale:
            stale.append(m)
    if not stale:
        return
    names = ", ".join(repr(f.name) for f in stale)
    if retire_old and current == to:
        for f in stale:
            if plan.apply:
                with plan.step("fic", f.name, f"retiring the old-format FIC {f.name}"):
                    run.fic.delete(f)
            plan.add("fic", f"{run.fic.target}: {f.name}", P.DELETED if plan.apply else P.PLANNED,
                     detail="old-format FIC retired", subject=f.subject)
        return
    cmd = f"ppmi-build upgrade --env {target.name} --to {to} --retire-old"
    plan.extra["retire_command"] = cmd
    if retire_old:
        plan.note(f"--retire-old: the old FIC {names} stays in this run, which changes the version; confirm the "
                  f"plug-in works at version {to} first, then run: {cmd}")
    else:
        plan.note(f"the old FIC {names} stays until the plug-in is confirmed working at version {to} (trigger it "
                  f"and check the trace); then run: {cmd}")


def _rollback(run: Run, mid: str, label: str, current: int, to: int, raw_version: Any,
              created_fic: entra.Fic | None) -> str:
    """Undo a failed upgrade: set the record's version back (always sent when it was to change: a PATCH whose
    answer was lost may have been applied), then remove the v2 FIC this run created, but only once the version is
    known to be the old one (a record at version 2 needs it). Returns the text to append to the error message."""
    from ..dataverse.managed_identity import MI_SELECT

    plan = run.plan
    shown = "null" if raw_version is None else raw_version
    outcome = ""
    version_ok = current == to
    if current != to:
        try:
            run.dv.update("managedidentities", mid, {"version": raw_version}, select=MI_SELECT)
            plan.add("rollback", label, P.ROLLED_BACK, id=mid, detail=f"version set back to {shown}")
            outcome += f"; the record's version was set back to {shown}"
            version_ok = True
        except PpmiError as e2:
            plan.add("rollback", label, P.FAILED, id=mid, error=e2.message)
            outcome += (f"; setting the version back to {shown} FAILED ({e2.message}): check managedidentities({mid})"
                        f" (the version {to} FIC was kept)")
    if created_fic is not None and version_ok and current != to:
        try:
            run.fic.delete(created_fic)
            plan.add("fic", f"{run.fic.target}: {created_fic.name}", P.ROLLED_BACK,
                     detail=f"version {to} FIC removed again")
            outcome += f", and the version {to} FIC {created_fic.name!r} was removed"
        except PpmiError as e3:
            plan.note(f"could not remove the version {to} FIC {created_fic.name!r} ({e3.message}); it is unused: "
                      "delete it")
    return outcome
