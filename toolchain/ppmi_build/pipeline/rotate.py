"""``ppmi-build rotate --env NAME --new-cert PATH [--plan] [--retire-old] [ARTIFACT]``: certificate rotation
that never leaves the plug-in without a matching federated identity credential (domain-spec §5
"Rotation": a new certificate changes the FIC subject, so add the new FIC before redeploying).

Steps (every input is checked before the first write: the new certificate opens and can sign, the ARTIFACT
loads or the project can be built, the configuration is complete, Dataverse and Graph/ARM answer):

1. Read what Dataverse holds: the component (``pluginpackage``/``pluginassembly``), its content (kept in memory
   as the rollback copy), the signer of that content (the *old* certificate, unless ``--old-cert`` names it) and
   the bound ``managedidentities`` record (its ``version``).
2. Count the FICs: adding the new one must not exceed the cap of 20; otherwise refuse (exit 1) and name the
   FICs ppmi-build made for this environment that could go (domain-spec §1.7).
3. Build the project (no ARTIFACT), then add the new certificate's FIC (the old one stays).
4. Sign the artifact with the new certificate, register it, bind, and verify what Dataverse holds
   (:meth:`ppmi_build.pipeline.release.Run.verify_dataverse`).
5. Only then the old FIC: deleted with ``--retire-old``, otherwise the command to delete it later is printed.
6. ``next_steps``: point ``[signing] certificate`` (or ``PPMI_CERT`` / the ``PPMI_PFX_BASE64`` secret) at the new
   certificate, otherwise the next ``release`` signs with the old one and re-creates its FIC.

On any failure after the new FIC was added (steps 3-4) the run rolls back: the old content is registered again
and bound, what Dataverse holds is verified against the old certificate's FIC (which was never touched), the
local artifact gets its original bytes back, and the new FIC is removed again if this run created it. The
original error is then raised (its exit code), with the rollback in the actions.
"""

from __future__ import annotations

import json
import os
import shlex
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import entra
from ..errors import BadInput, CertificateError, PpmiError
from ..signing.keys.uri import is_key_uri
from . import plan as P
from .plan import Plan
from .release import (
    PFX_BASE64_ENV,
    EnvironmentTarget,
    Run,
    attach,
    cert_sha256,
    check_buildable,
    check_certificate,
    desired_fic,
    embedded_certificate,
    held_content,
    load_signing_key,
    note_new_issuer,
    signer_of_bytes,
    with_timestamp_urls,
)


def current_component(run: Run, artifact: Path | None) -> Any:
    """The registered component: the ARTIFACT's row, else the one for ``[plugin] name``."""
    if artifact is not None:
        from ..dataverse.managed_identity import find_target

        return find_target(run.dv, run.load_artifact(Path(artifact)))
    component = run.find_component_by_name()
    if component is None:
        raise BadInput(f"nothing is registered for [plugin] name = {run.target.settings.plugin.name!r} in "
                       f"{run.target.url}; run `ppmi-build release --env {run.target.name}` first, or give the "
                       "ARTIFACT")
    return component


def _for_environment(fic: entra.Fic, environment_id: str) -> bool:
    """True when the FIC names this environment: ``/e/{id}/`` in a v1/v2 subject, ``environment:{id}`` in a v0
    subject (domain-spec §1.0-§1.2)."""
    return f"/e/{environment_id}/" in fic.subject or f"environment:{environment_id}" in fic.subject


def stale_candidates(existing: list[entra.Fic], environment_id: str, keep: list[entra.Fic]) -> list[str]:
    """Names of FICs ppmi-build made for this environment that are neither kept nor in use here."""
    return [f.name for f in existing
            if f.made_by_ppmi and _for_environment(f, environment_id) and not any(f.same_values(k) for k in keep)]


def retire_command(run: Run, fic: entra.Fic, new_cert: str, artifact: Path | None) -> str:
    """The command line that removes the old FIC later: the same rotation again (it converges: nothing else
    changes) with ``--retire-old --old-fic NAME``."""
    option = "--new-key" if is_key_uri(new_cert) else "--new-cert"
    cmd = (f"ppmi-build rotate --env {shlex.quote(run.target.name)} {option} {shlex.quote(new_cert)} "
           f"--retire-old --old-fic {shlex.quote(fic.name)}")
    return cmd + (f" {shlex.quote(str(artifact))}" if artifact is not None else "")


def certificate_next_step(run: Run, new_cert: Path | str) -> str | None:
    """What to change so that the next ``release`` signs with ``new_cert`` (None when the configuration already
    names it): the ``PPMI_PFX_BASE64`` secret, ``PPMI_CERT``, or the exact ``[signing] certificate = "…"`` line."""
    settings = run.target.settings
    env = os.environ if run.environ is None else run.environ
    why = ("otherwise the next `ppmi-build release` signs with the old certificate again and re-creates its "
           "retired FIC")
    if is_key_uri(new_cert):
        if env.get(PFX_BASE64_ENV):
            return f"remove the CI secret {PFX_BASE64_ENV} (it comes before [signing] key); {why}"
        if settings.signing.key == str(new_cert):
            return None
        where = settings.config_file or (Path(settings.root).resolve() / "ppmi.toml")
        return (f"set [signing] key in {where} to the new key (and remove certificate) ({why}); the line:\n"
                f"    key = {json.dumps(str(new_cert))}")
    new_path = Path(new_cert).resolve()
    if env.get(PFX_BASE64_ENV):
        return (f"replace the CI secret {PFX_BASE64_ENV} with the base64 of {new_cert} (and its password secret); "
                f"{why}")
    configured = settings.signing.certificate
    if configured and settings.resolve_path(configured).resolve() == new_path:
        return None
    if env.get("PPMI_CERT"):
        return f"set PPMI_CERT={shlex.quote(str(new_path))}; {why}"
    root = Path(settings.root).resolve()
    shown = new_path.relative_to(root).as_posix() if new_path.is_relative_to(root) else str(new_path)
    where = settings.config_file or (root / "ppmi.toml")
    return (f"point [signing] certificate in {where} at the new certificate ({why}); the line:\n"
            f"    certificate = {json.dumps(shown)}")


#: the fix :func:`ppmi_build.signing.keys.check_signing_certificate` suggests for an expired certificate; wrong
#: for the --new-cert of a rotation (that is the rotation)
_RENEW_FIX = "renew it and rotate (ppmi-build rotate)"


def check_new_certificate(key: Any, *, kind: str, new_cert: Path | str) -> None:
    """:func:`ppmi_build.pipeline.release.check_certificate` for the ``--new-cert`` of a rotation (the same check
    ``--plan`` and a real run make), with a fix that fits: pick a valid new certificate (an expired one is not
    renewed by rotating to it).

    Raises:
        CertificateError (exit 2): the certificate cannot sign ``kind`` (expired, not yet valid, no code-signing
            EKU, short key, NuGet rules).
    """
    try:
        check_certificate(key, kind=kind, label=f"--new-cert {new_cert}")
    except CertificateError as e:
        if _RENEW_FIX in e.message:
            e.message = e.message.replace(_RENEW_FIX, "pick a valid (unexpired) certificate for --new-cert "
                                                      "(`ppmi-build cert new` makes one for development)")
            e.args = (e.message,)
        raise


def run_rotate(env_name: str, new_cert: Path | str, artifact: Path | str | None = None, *, plan_only: bool = False,
               pin_env: str | None = None, cert_chain: Path | str | None = None,
               retire_old: bool = False, old_fic_name: str | None = None, start: Path | str | None = None,
               environ: dict[str, str] | None = None, progress: Callable[[str], None] | None = None,
               password: Any = None, settings: Any = None, timestamp_urls: list[str] | None = None) -> Plan:
    """Rotate the signing certificate of the plug-in in environment ``env_name`` to ``new_cert``.

    Args:
        new_cert: the new certificate (PFX/PEM with key; its password from ``password``, a PasswordSource, or
            ``[signing] password_env``), or a key URI (``--new-key``; ``pin_env``/``cert_chain`` apply).
        artifact: the ``.dll``/``.nupkg`` to re-sign (default: build the project).
        retire_old: delete the old certificate's FIC after the new state verified.
        old_fic_name: the FIC to retire, by name (``--old-fic``): what the printed retire command passes,
            because after a successful rotation Dataverse no longer holds the old certificate.
        timestamp_urls: RFC 3161 servers (``[]``: no timestamp); None = ``[signing] timestamp_urls``.
    Returns:
        the :class:`Plan`.
    Raises:
        PlanRefused: the FIC cap would be exceeded (nothing changed). Any step's error, after rollback; the
        partial plan is attached as ``err.plan``.
    """
    from ..config import load_settings

    plan = Plan("rotate", env_name, apply=not plan_only, progress=progress)
    try:
        settings = with_timestamp_urls(settings or load_settings(start, environ=environ), timestamp_urls)
        target = EnvironmentTarget.load(settings, env_name)
        with Run(plan, target, environ) as run:
            _rotate(run, new_cert, Path(artifact) if artifact is not None else None, retire_old=retire_old,
                    old_fic_name=old_fic_name, password=password, pin_env=pin_env, cert_chain=cert_chain)
    except PpmiError as e:
        raise attach(e, plan) from None
    return plan


def _rotate(run: Run, new_cert: Path | str, artifact: Path | None, *, retire_old: bool, old_fic_name: str | None,
            password: Any,
            pin_env: str | None = None, cert_chain: Path | str | None = None) -> None:
    from ..dataverse.managed_identity import read_back
    from ..identity.certificates import describe

    plan, target = run.plan, run.target
    with plan.step("certificate", str(new_cert), "loading the new signing certificate"):
        key = load_signing_key(target.settings, new_cert, password=password, environ=run.environ, pin_env=pin_env,
                               cert_chain=cert_chain)
    new = key.certificate_chain()[0]

    # 1. what Dataverse holds now
    with plan.step("read", target.url, "reading the registered component and its signer"):
        component = current_component(run, artifact)
        old_content = held_content(run.dv, component.entity_set, component.id)
        if old_content is None:
            raise BadInput(f"{component.label} holds no content in {target.url}; run `ppmi-build release` first")
        kind = "package" if component.kind == "pluginpackage" else "assembly"
        old_signer = signer_of_bytes(old_content, kind)
        held = read_back(run.dv, component)
        mi = held.get("managedidentity") or {}
        version = int(mi.get("version") or 0) if mi else target.version
    plan.set_id(component.kind, component.id)
    new_fic = desired_fic(target, new, version=version)
    old_fic = desired_fic(target, old_signer, version=version)
    existing = run.fic.list()
    old_present = entra.match_fic(existing, old_fic).exact
    same_cert = cert_sha256(old_signer) == cert_sha256(new)
    for f in existing:  # an explicitly named FIC must be this environment's: checked before anything changes
        if old_fic_name and f.name == old_fic_name and not _for_environment(f, target.environment_id):
            raise BadInput(f"--old-fic {old_fic_name!r} is not a FIC of environment {target.name} "
                           f"({target.environment_id}): its subject is {f.subject}; rotate retires only this "
                           "environment's FICs")
    plan.extra["old_certificate"] = describe(old_signer)
    plan.extra["new_certificate"] = describe(new)
    # the inputs, before anything changes
    with plan.step("certificate", str(new_cert), "checking the new certificate"):
        check_new_certificate(key, kind=kind, new_cert=new_cert)
    if artifact is None:
        with plan.step("build", str(target.settings.plugin.project or target.settings.root),
                       "checking the project can be built"):
            check_buildable(target.settings, apply=plan.apply, environ=run.environ)

    # 2. the cap, counted before anything changes
    if entra.match_fic(existing, new_fic).exact is None:
        with plan.step("fic", new_fic.name, f"counting the FICs on {run.fic.target}"):
            stale = stale_candidates(existing, target.environment_id, [old_fic, new_fic])
            run.fic.check_capacity(existing, 1, keep=[old_fic, new_fic], candidates=stale)

    # 3. build (local; nothing to undo remotely when it fails), then the new FIC
    path = run.artifact_path(artifact)
    original = path.read_bytes() if (path is not None and path.exists()) else None
    if path is not None and artifact is None:
        with plan.step("artifact", str(path), f"reading {path.name}"):
            run.load_artifact(path)
    res = run.ensure_fic(new, version=version, keep=(old_fic,))
    created_fic = res.fic if res.status == P.CREATED else None

    # 4. re-sign, register, bind, verify — any failure from here on is rolled back (the new FIC too)
    try:
        if path is None:
            plan.add("sign", "build output", P.PLANNED, detail="sign with the new certificate after the build")
            plan.add("register", component.label, P.PLANNED, id=component.id, detail="content signed by the new "
                                                                                      "certificate")
            run.bind(component, version=version)
        else:
            run.sign(path, key)
            art = run.load_artifact(path)
            embedded = embedded_certificate(run, path, new)
            if embedded != new:  # a remote key whose certificate changed (production-keys §2(b))
                note_new_issuer(run, run.ensure_fic(embedded, version=version, keep=(old_fic, res.fic)), embedded)
            run.register(art)
            run.bind(component, version=version)
            if plan.apply:
                run.verify_dataverse(component, expected=art.data, version=version)
    except (Exception, KeyboardInterrupt) as err:
        if plan.apply:
            outcome = _rollback(run, component, old_content, version, path, original, created_fic,
                                err.message if isinstance(err, PpmiError) else f"{type(err).__name__}: {err}")
            if isinstance(err, PpmiError):
                err.message += outcome
            else:
                plan.progress(f"[rotate] {outcome.lstrip('; ')}")
        raise

    # 5. the old FIC, only now; 6. what the user has to change
    if plan.apply:
        step = certificate_next_step(run, new_cert)
        if step:
            plan.next_step(step)
    _retire_old(run, existing, new_fic, old_fic, old_present, same_cert, new_cert, artifact, retire_old=retire_old,
                old_fic_name=old_fic_name)


def _retire_old(run: Run, existing: list[entra.Fic], new_fic: entra.Fic, old_fic: entra.Fic,
                old_present: entra.Fic | None, same_cert: bool, new_cert: Path | str, artifact: Path | None, *,
                retire_old: bool, old_fic_name: str | None) -> None:
    """Step 5: delete the old FIC (``--retire-old``), or print the command that does it later."""
    plan = run.plan
    if old_fic_name:  # named explicitly (e.g. the command printed by an earlier rotation)
        named = [f for f in existing if f.name == old_fic_name]
        if not named:
            plan.note(f"no FIC named {old_fic_name!r} on {run.fic.target}; nothing to retire")
            return
        to_retire = named[0]
    elif same_cert:
        plan.note("Dataverse already uses the new certificate; give --old-fic NAME to retire an older FIC")
        return
    elif old_present is None:
        plan.note(f"the old certificate's FIC (subject {old_fic.subject}) is not on {run.fic.target}")
        return
    else:
        to_retire = old_present
    if to_retire.same_values(new_fic):
        plan.note(f"FIC {to_retire.name!r} is the one the new certificate needs; it stays")
        return
    if retire_old:
        if plan.apply:
            with plan.step("fic", to_retire.name, f"retiring the old FIC {to_retire.name}"):
                run.fic.delete(to_retire)
        plan.add("fic", f"{run.fic.target}: {to_retire.name}", P.DELETED if plan.apply else P.PLANNED,
                 detail="old certificate's FIC retired" if plan.apply else "retire the old certificate's FIC",
                 subject=to_retire.subject)
    else:
        cmd = retire_command(run, to_retire, str(new_cert), artifact)
        plan.extra["retire_command"] = cmd
        plan.note(f"the old FIC {to_retire.name!r} stays until you retire it: {cmd}")


def _rollback(run: Run, component: Any, old_content: bytes, version: int, path: Path | None,
              original: bytes | None, created_fic: entra.Fic | None, error: str) -> str:
    """Put the old artifact back (Dataverse and local file), verify it, then drop the new FIC we added.

    Returns the text to append to the error message (``; rolled back: …`` or ``; rollback FAILED …``)."""
    from ..dataverse.registration import load_artifact

    plan = run.plan
    plan.progress(f"[rotate] failed ({error}); rolling back to the old artifact")
    outcome = ""
    ok = False
    try:
        if path is not None and original is not None and path.read_bytes() != original:
            _restore_file(path, original)
            plan.add("rollback", str(path), P.ROLLED_BACK, detail="local artifact restored")
        kind = "package" if component.kind == "pluginpackage" else "assembly"
        with tempfile.TemporaryDirectory(prefix="ppmi-rollback-") as tmp:
            old_path = Path(tmp) / (path.name if path is not None else f"old.{'nupkg' if kind == 'package' else 'dll'}")
            old_path.write_bytes(old_content)
            art = load_artifact(old_path, kind=kind, unique_name=component.name if kind == "package" else None)
            run.register(art)
        run.bind(component, version=version)
        run.verify_dataverse(component, expected=old_content, version=version, record=False)
        plan.add("rollback", component.label, P.ROLLED_BACK,
                 detail="the old artifact is registered and bound again; its FIC is present")
        ok = True
    except PpmiError as e2:
        plan.add("rollback", component.label, P.FAILED, error=e2.message)
        outcome = (f"; rollback FAILED ({e2.message}): check {component.label} before re-running (the new FIC "
                   "was kept, in case Dataverse holds the new artifact)")
    if ok and created_fic is not None:
        try:
            run.fic.delete(created_fic)
            plan.add("fic", f"{run.fic.target}: {created_fic.name}", P.ROLLED_BACK, detail="new FIC removed again")
        except PpmiError as e3:
            plan.note(f"could not remove the new FIC {created_fic.name!r} ({e3.message}); it is unused: delete it")
    if ok:
        outcome = "; rolled back: the old artifact is bound again and its FIC is present"
        if created_fic is not None:
            outcome += ", the new FIC was removed"
    return outcome


def _restore_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file beside it and a rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
