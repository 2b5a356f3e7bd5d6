"""``ppmi-build release --env NAME [--plan] [ARTIFACT]``: the whole chain as one safe, repeatable step.

Order of the steps (DESIGN.md §1), each recorded as an action (:mod:`.plan`):

1. ``build`` — ``dotnet build``/``pack`` (:func:`ppmi_build.project.dotnet.build`); skipped when an ARTIFACT is
   given ("an ARTIFACT given on the command line skips the build and is signed, registered and bound as it is").
2. ``sign`` — Authenticode (``.dll``) or NuGet author signature (``.nupkg``) with the configured certificate, in
   place; ``unchanged`` when the file already carries a valid signature by that certificate.
3. ``verify`` — the signature verifies and its signer is the configured certificate.
4. ``fic`` — compute issuer/subject/audience for the record version (:func:`ppmi_build.identity.fic.compute_fic`)
   and make sure that FIC exists on the app registration (Graph) or UAMI (ARM): exact, case-sensitive match;
   the 20-FIC cap counted first (domain-spec §1.7).
5. ``register`` — create or update the ``pluginassembly``/``pluginpackage`` row (unchanged content is not sent).
6. ``bind`` — upsert the ``managedidentities`` row (``version`` always sent) and bind it to the component.
7. ``verify`` (Dataverse) — read back: the component holds exactly the signed bytes, it is bound to the record,
   the record's ``version`` is the configured one, and the FIC computed from the signer of the content Dataverse
   holds exists on the identity.

Safety: every input is checked before the first write, local or remote (:func:`check_inputs`: the ARTIFACT loads
as a plug-in assembly/package, or the project can be built; the certificate opens and can sign; the configuration
is complete; Dataverse answers with the configured URL and credentials; the FIC cap leaves room), and the signed
artifact is loaded before the FIC is created, so once the FIC exists only Dataverse steps remain. The FIC is
ensured *before* anything in Dataverse changes, so an environment is never bound to an artifact whose FIC is
missing; every step is idempotent, so a failed run can simply be re-run. ``--plan`` reads only (GET requests, no
local writes) and records ``planned`` for every change it would make.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from .. import entra
from ..errors import CheckFailed, ConfigError, PpmiError
from ..http.retry import RetryPolicy
from ..identity.certificates import sha256_hex as cert_sha256
from . import plan as P
from .plan import Plan

#: CI secret holding the base64 PFX (DESIGN.md §4); when set it is the signing certificate.
PFX_BASE64_ENV = "PPMI_PFX_BASE64"


# --- configuration of one environment -----------------------------------------------------------------


@dataclass
class EnvironmentTarget:
    """Everything a pipeline step needs to know about one ``[environments.NAME]`` (DESIGN.md §4).

    Attributes:
        settings: the merged :class:`ppmi_build.config.Settings`.
        name: environment name (``--env``).
        url: Dataverse environment URL.
        environment_id: Power Platform environment ID (lower-case hyphenated GUID).
        tenant_id / application_id: Entra tenant and client ID of the app registration or UAMI.
        version: managed identity record version (FIC format) from ``[identity] version``.
        cloud: ``public`` / ``usgov`` / ``china`` / ``usnat`` / ``ussec``.
        solution: ``MSCRM.SolutionUniqueName`` for created components, or None.
    """

    settings: Any
    name: str
    env: Any
    url: str
    environment_id: str
    tenant_id: str
    application_id: str
    version: int
    cloud: str
    solution: str | None

    @classmethod
    def load(cls, settings: Any, name: str) -> EnvironmentTarget:
        """Validate the settings a release needs. Raises ConfigError/GuidError naming the setting to fix."""
        from ..identity.guids import normalize_guid

        env = settings.environment(name)
        upper = name.upper().replace("-", "_")
        if not env.url:
            raise ConfigError(f"environment {name!r} has no url; set [environments.{name}] url or PPMI_ENV_{upper}_URL")
        if not env.environment_id:
            raise ConfigError(f"environment {name!r} has no environment_id; set [environments.{name}] environment_id "
                              f"or PPMI_ENV_{upper}_ENVIRONMENT_ID (Power Platform admin center > Environment details)")
        ident = settings.identity
        for key, var in (("tenant_id", "PPMI_TENANT_ID"), ("application_id", "PPMI_APPLICATION_ID")):
            if not getattr(ident, key):
                raise ConfigError(f"[identity] {key} is not set; set it in ppmi.toml or {var}")
        return cls(settings=settings, name=name, env=env, url=env.url,
                   environment_id=normalize_guid(env.environment_id, "environment ID"),
                   tenant_id=normalize_guid(ident.tenant_id, "tenant ID"),
                   application_id=normalize_guid(ident.application_id, "application ID"),
                   version=int(ident.version), cloud=ident.cloud or "public", solution=env.solution or None)


def load_signing_key(settings: Any, cert_path: Path | str | None = None, *, password: Any = None,
                     environ: dict[str, str] | None = None, key: str | None = None, pin_env: str | None = None,
                     cert_chain: Path | str | None = None) -> Any:
    """The signing key, by the one precedence of :func:`ppmi_build.signing.keys.resolve_signing_key`: the command
    line (``key`` URI or ``cert_path``; a ``cert_path`` that is a key URI counts as ``key``), else the base64 PFX
    in ``PPMI_PFX_BASE64`` (CI), else ``[signing] key`` / ``certificate`` (``PPMI_CERT``).

    Args:
        password: a :class:`ppmi_build.signing.keys.PasswordSource`; default ``[signing] password_env``
            (then ``PPMI_PFX_PASSWORD``).
        pin_env, cert_chain: ``--pin-env`` and ``--cert-chain`` for a key URI.
    Raises:
        ConfigError: nothing configured. BadInput, KeyUriError, InputFileError, PasswordError, CertificateError,
        TokenError (exit 2), TokenDeviceError (exit 3) from the key source.
    """
    from ..signing.keys import PasswordSource, is_key_uri, resolve_signing_key

    if cert_path is not None and is_key_uri(cert_path):
        key, cert_path = str(cert_path), None
    password = password or PasswordSource(env=settings.signing.password_env)
    return resolve_signing_key(settings, key=key, cert=cert_path, password=password, pin_env=pin_env,
                               cert_chain=cert_chain, environ=environ)


def desired_fic(target: EnvironmentTarget, cert: x509.Certificate, *, version: int | None = None) -> entra.Fic:
    """The FIC ``cert`` needs in ``target``'s environment for record ``version`` (default: configured)."""
    from ..identity.dn import dotnet_name
    from ..identity.fic import compute_fic

    v = target.version if version is None else int(version)
    values = compute_fic(cert, tenant_id=target.tenant_id, environment_id=target.environment_id, version=v,
                         cloud=target.cloud)
    desc = entra.fic_description(target.name, target.environment_id, dotnet_name(cert.subject), cert_sha256(cert), v)
    return entra.desired_fic(values, desc)


def fic_client(target: EnvironmentTarget, environ: dict[str, str] | None = None) -> entra.FicClient:
    return entra.client_from_settings(target.settings.identity, environ=environ,
                                      retry=_entra_retry(environ))


def _entra_retry(environ: dict[str, str] | None) -> RetryPolicy:
    return RetryPolicy.from_env(environ)


def dataverse_client(target: EnvironmentTarget, environ: dict[str, str] | None = None,
                     on_retry: Callable[[str], None] | None = None) -> Any:
    from ..dataverse.client import connect

    return connect(target.env, environ=environ, on_retry=on_retry)


def identity_spec(target: EnvironmentTarget, version: int | None = None) -> Any:
    """The ``managedidentities`` row the target needs. Raises GuidError for a malformed or all-zero
    ``[identity] managed_identity_id``."""
    from ..dataverse.managed_identity import IdentitySpec
    from ..identity.guids import normalize_guid

    ident = target.settings.identity
    mi_id = normalize_guid(ident.managed_identity_id, "managed identity ID") if ident.managed_identity_id else None
    return IdentitySpec(application_id=target.application_id, tenant_id=target.tenant_id,
                        version=target.version if version is None else int(version), managed_identity_id=mi_id)


def read_record_version(target: EnvironmentTarget, *, environ: dict[str, str] | None = None
                        ) -> tuple[int | None, str | None]:
    """``(version, managedidentityid)`` of the environment's ``managedidentities`` record: the fixed
    ``[identity] managed_identity_id`` if set, else the one row for this application and tenant (None, None when
    there is none). ``version`` null is returned as 0 (v0, domain-spec §2.5).

    Raises:
        CheckFailed: several records for the application (set ``managed_identity_id``).
        DataverseError / ConfigError: service or credential problems.
    """
    from ..dataverse.managed_identity import MI_SELECT

    with dataverse_client(target, environ) as dv:
        fixed = target.settings.identity.managed_identity_id
        if fixed:
            row = dv.retrieve("managedidentities", fixed, select=MI_SELECT)
            rows = [row] if row else []
        else:
            rows = dv.query("managedidentities", select=MI_SELECT,
                            filter=f"applicationid eq {target.application_id} and credentialsource eq 2")
    if not rows:
        return None, None
    if len(rows) > 1:
        ids = ", ".join(r["managedidentityid"] for r in rows)
        raise CheckFailed(f"{len(rows)} managedidentities records use application {target.application_id} ({ids}); "
                          "set [identity] managed_identity_id to the one the plug-in is bound to")
    row = rows[0]
    return int(row.get("version") or 0), row["managedidentityid"]


# --- artifact helpers ----------------------------------------------------------------------------------


def trust_anchor(key: Any) -> list[x509.Certificate]:
    """Trust anchor for checking our own signatures: the top of the key's chain (as ``sign_file`` does)."""
    return [key.certificate_chain()[-1]]


def signature_state(path: Path, key: Any) -> tuple[str, Any]:
    """``("same" | "other" | "invalid" | "unsigned", VerifyResult)`` of ``path`` relative to ``key``'s certificate."""
    from ..signing.api import verify_file

    result = verify_file(path, trusted_roots=trust_anchor(key))
    if not result.signed:
        return "unsigned", result
    leaf = key.certificate_chain()[0]
    signer = result.signer_certificate
    if signer is None or cert_sha256(signer) != cert_sha256(leaf):
        return "other", result
    return ("same" if result.valid else "invalid"), result


def signer_of_bytes(data: bytes, kind: str) -> x509.Certificate:
    """Signer certificate of artifact bytes (``kind`` ``assembly``/``package``), via a private temp file."""
    from ..signing.api import signer_certificate

    suffix = ".nupkg" if kind == "package" else ".dll"
    fd, name = tempfile.mkstemp(prefix="ppmi-held-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return signer_certificate(name)
    finally:
        os.unlink(name)


def embedded_certificate(run: Run, path: Path, expected: x509.Certificate) -> x509.Certificate:
    """The signer certificate embedded in the signed ``path``: the one whose FIC the plug-in needs. A remote key
    whose certificate changes (Trusted Signing: a new leaf every day, from one of several issuing CAs;
    production-keys §2(b)) may have signed with another certificate than ``expected`` (the key's chain read
    earlier); a note says so. In plan mode, or when the file cannot be read, ``expected``."""
    from ..identity.dn import dotnet_name
    from ..signing.api import signer_certificate

    if not run.plan.apply or not path.is_file():
        return expected
    try:
        found = signer_certificate(path)
    except PpmiError:
        return expected
    if found is None:
        return expected
    if found != expected:
        run.plan.note(f"{path.name} carries certificate {dotnet_name(found.subject)} issued by "
                      f"{dotnet_name(found.issuer)} (serial {found.serial_number:x}), not the one read before "
                      "signing: its FIC is the one ensured")
    return found


def note_new_issuer(run: Run, res: entra.EnsureResult, cert: x509.Certificate) -> None:
    """Report a FIC created for a CA-issued certificate: an issuing CA this identity has not seen in this
    environment (a Trusted Signing profile switches issuing CAs without notice, production-keys §2(b))."""
    from ..identity.dn import dotnet_name

    if res.status in (P.CREATED, P.PLANNED) and cert.issuer != cert.subject:
        run.plan.note(f"new issuer {dotnet_name(cert.issuer)} for {dotnet_name(cert.subject)}: FIC {res.fic.name} "
                      f"{'created' if res.status == P.CREATED else 'to be created'} before binding "
                      f"({len(res.existing) + (res.status == P.CREATED)} of {entra.FIC_CAP} FICs on "
                      f"{run.fic.target})")


def held_content(dv: Any, entity_set: str, row_id: str) -> bytes | None:
    """The ``content`` column Dataverse holds for a component row, decoded (None when empty)."""
    row = dv.retrieve(entity_set, row_id, select=["content"])
    text = (row or {}).get("content")
    if not text:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


# --- checks before the first write -----------------------------------------------------------------------


def check_buildable(settings: Any, *, apply: bool, environ: dict[str, str] | None = None) -> Path:
    """Check that the project can be built, without building it: one ``.csproj`` found (``[plugin] project`` or
    the project folder / ``src/``) and readable; with ``apply`` also ``dotnet`` on PATH (``--plan`` never
    builds). Returns the ``.csproj`` path.

    Raises:
        ProjectError / InputFileError / ConfigError (exit 2): no or several projects, not XML.
        ToolNotFound (exit 3): dotnet missing.
    """
    from ..project.csproj import Project
    from ..project.dotnet import find_dotnet, resolve_project

    csproj, _root, _kind = resolve_project(settings.root)
    Project.load(csproj)
    if apply:
        find_dotnet(environ)
    return csproj


def _note_missing_dotnet(plan: Plan, environ: dict[str, str] | None) -> None:
    """``--plan`` never builds, so a missing ``dotnet`` does not stop it; it is said, since the release itself
    would stop at the build (exit 3)."""
    from ..errors import ToolNotFound
    from ..project.dotnet import find_dotnet

    try:
        find_dotnet(environ)
    except ToolNotFound as e:
        message = f"warning: the release would stop at the build: {e.message}"
        plan.progress(message)
        plan.note(message)


def check_certificate(key: Any, *, kind: str, label: str) -> None:
    """Refuse a signing certificate that cannot make a valid signature for ``kind`` (``assembly``/``package``):
    :func:`ppmi_build.signing.keys.check_signing_certificate` (RSA >= 2048, code-signing EKU, validity period,
    NuGet rules for packages). Raises CertificateError (exit 2)."""
    from ..signing.keys import check_signing_certificate

    check_signing_certificate(key.certificate_chain()[0], label=label, nuget=kind == "package")


def check_inputs(run: Run, key: Any, artifact: Path | None, *, cert_label: str) -> tuple[Any, str | None, Any]:
    """Everything ``release`` needs, checked before the first write (local file, FIC, Dataverse).

    * ARTIFACT given: it loads as a plug-in assembly (strong-named) or package, under 16 MB; its signature state
      relative to ``key``; the certificate can sign it unless it already carries a valid signature by it.
    * no ARTIFACT: the project can be built (:func:`check_buildable`) and the certificate can sign the kind
      ``[plugin] kind``.
    * Dataverse answers ``WhoAmI`` with the configured URL and credentials, and the registered component is looked
      up (for the FIC cap message).

    Returns:
        ``(artifact, signature state or None, registered component or None)``.
    Raises:
        BadInput subclasses (exit 2), ToolNotFound, DataverseError/AuthError (exit 3).
    """
    from ..dataverse.managed_identity import Target
    from ..dataverse.registration import find_component

    plan, settings = run.plan, run.target.settings
    art = state = None
    if artifact is not None:
        with plan.step("artifact", str(artifact), f"checking {artifact.name}"):
            art = run.load_artifact(artifact)
            state, _ = signature_state(artifact, key)
        if state != "same":
            with plan.step("certificate", cert_label, "checking the signing certificate"):
                check_certificate(key, kind=art.kind, label=cert_label)
    else:
        with plan.step("build", str(settings.plugin.project or settings.root), "checking the project can be built"):
            check_buildable(settings, apply=plan.apply, environ=run.environ)
        if not plan.apply:
            _note_missing_dotnet(plan, run.environ)
        with plan.step("certificate", cert_label, "checking the signing certificate"):
            check_certificate(key, kind=settings.plugin.kind, label=cert_label)
    with plan.step("dataverse", run.target.url, f"connecting to {run.target.url}"):
        run.dv.who_am_i()
        if art is not None:
            row = find_component(run.dv, art)
            component = Target.from_row(art.table, row) if row is not None else None
        else:
            component = run.find_component_by_name()
        check_version_kept(run, component)
    return art, state, component


def check_version_kept(run: Run, component: Any, version: int | None = None) -> None:
    """Refuse, before any write, a run that would lower the ``version`` of the record ``component`` is bound to
    (or of the fixed ``[identity] managed_identity_id``) to ``version`` (default: configured). Raises PlanRefused
    (:func:`ppmi_build.dataverse.managed_identity.check_not_lowered`)."""
    from ..dataverse.managed_identity import MI_SELECT, check_not_lowered

    spec = identity_spec(run.target, version)
    mid = spec.managed_identity_id or (component.managed_identity_id if component is not None else None)
    if not mid:
        return
    row = run.dv.retrieve("managedidentities", mid, select=MI_SELECT)
    check_not_lowered(row, spec, env_name=run.target.name, config_file=run.target.settings.config_file)


# --- the steps (shared by release, rotate and upgrade) -----------------------------------------------------


class Run:
    """State of one pipeline run: the plan, the environment, the clients (closed by :meth:`close`)."""

    def __init__(self, plan: Plan, target: EnvironmentTarget, environ: dict[str, str] | None):
        self.plan = plan
        self.target = target
        self.environ = environ
        self._fic: entra.FicClient | None = None
        self._dv: Any = None
        #: --plan: the artifact would be (re-)signed first, so its content would change
        self.sign_pending = False
        #: more variables to keep from dotnet (the --password-env of the command line); the fixed list and
        #: [signing] password_env are always kept from it (ppmi_build.config.secret_env_names)
        self.secret_env: list[str] = []

    def keep_secret(self, password: Any) -> None:
        """Keep the variable ``password`` (a PasswordSource) reads from out of child processes' environment."""
        name = getattr(password, "env", None)
        if name:
            self.secret_env.append(name)

    @property
    def fic(self) -> entra.FicClient:
        if self._fic is None:
            self._fic = fic_client(self.target, self.environ)
        return self._fic

    @property
    def dv(self) -> Any:
        if self._dv is None:
            self._dv = dataverse_client(self.target, self.environ, on_retry=self.plan.progress)
        return self._dv

    def close(self) -> None:
        if self._fic is not None:
            self._fic.close()
        if self._dv is not None:
            self._dv.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- build ----------------------------------------------------------------------------------------------

    def artifact_path(self, artifact: Path | str | None) -> Path | None:
        """The ARTIFACT, or the build output (built now; in plan mode nothing is built and None is returned)."""
        plan, settings = self.plan, self.target.settings
        if artifact is not None:
            path = Path(artifact)
            plan.add("build", str(path), P.UNCHANGED, detail="ARTIFACT given: build skipped")
            return path
        if not plan.apply:
            plan.add("build", str(settings.plugin.project or settings.root), P.PLANNED,
                     detail="dotnet build/pack (not run in --plan)")
            return None
        from ..project.dotnet import build

        with plan.step("build", str(settings.plugin.project or settings.root), "building with dotnet"):
            result = build(settings.root, kind=settings.plugin.kind,
                           on_output=lambda line: plan.progress(f"  {line}"), environ=self.environ,
                           secret_env=self.secret_env)
        primary = result.primary.path
        plan.add("build", str(primary), P.CREATED, detail=f"{result.kind}, sha256 {result.primary.sha256}")
        return Path(primary)

    # -- sign + verify --------------------------------------------------------------------------------------

    def sign(self, path: Path, key: Any, *, state: str | None = None) -> None:
        """Sign ``path`` in place with ``key`` unless it already carries a valid signature by that certificate;
        then verify. In plan mode only report. ``state``: :func:`signature_state` when the caller already has it."""
        from ..identity.certificates import describe
        from ..signing.api import sign_file

        plan, settings = self.plan, self.target.settings
        leaf = key.certificate_chain()[0]
        who = describe(leaf)["subject"]
        with plan.step("sign", path.name, f"checking the signature of {path.name}"):
            if state is None:
                state, _ = signature_state(path, key)
            if state == "same":
                plan.add("sign", path.name, P.UNCHANGED, detail=f"already signed by {who}")
                plan.add("verify", path.name, P.UNCHANGED, detail=f"valid signature by {who}")
                return
            if not plan.apply:
                self.sign_pending = True
                plan.add("sign", path.name, P.PLANNED,
                         detail=f"sign with {who}" + (" (replacing another signature)" if state != "unsigned"
                                                      else ""))
                plan.add("verify", path.name, P.PLANNED, detail="verify the new signature")
                return
            plan.progress(f"  signing {path.name} with {who}")
            result = sign_file(path, key, timestamp_urls=settings.signing.timestamp_urls,
                               digest=settings.signing.digest or "sha256", overwrite=True)
            plan.add("sign", path.name, P.UPDATED if state != "unsigned" else P.CREATED,
                     detail=f"signed by {who}" + (", timestamped" if result.timestamped else "")
                     + (" (replaced another signature)" if state != "unsigned" else ""),
                     sha256=result.sha256_after)
        # sign_file verifies its output before it replaces the file (a failure raises SignatureInvalid and
        # leaves the original untouched), against the key's own chain: that is the verify step.
        anchor = next((n for n in result.notes if n.startswith("verified")), "verified")
        plan.add("verify", path.name, P.UNCHANGED if result.verified else P.FAILED,
                 detail=f"valid signature by {who}; {anchor}")

    # -- FIC ------------------------------------------------------------------------------------------------

    def ensure_fic(self, cert: x509.Certificate, *, version: int | None = None,
                   keep: tuple[entra.Fic, ...] = ()) -> entra.EnsureResult:
        """Make sure the FIC for ``cert`` exists on the identity (planned in plan mode); cap counted first."""
        plan = self.plan
        want = desired_fic(self.target, cert, version=version)
        with plan.step("fic", want.name, f"checking FIC {want.name} on {self.fic.target}"):
            res = entra.ensure_fic(self.fic, want, apply=plan.apply, keep=keep)
        for n in res.notes:
            plan.note(n)
        plan.add("fic", f"{self.fic.target}: {res.fic.name}", res.status,
                 detail=f"subject {res.fic.subject}", issuer=res.fic.issuer, subject=res.fic.subject,
                 audience=res.fic.audience, id=res.fic.id)
        if res.fic.id:
            plan.set_id("fic", res.fic.id)
        return res

    def preflight_fic(self, cert: x509.Certificate, *, version: int | None = None,
                      keep: tuple[entra.Fic, ...] = (), component: Any = None,
                      rotating_issuer: bool = False) -> entra.EnsureResult:
        """Read-only FIC check before anything changes (locally or remotely): refuses early when the cap
        would be exceeded, so a refused run leaves the artifact and every service untouched. At the cap, the FIC
        the deployed ``component`` (a ``managed_identity.Target``) needs is named as in use, never as one that
        could go. For a certificate of an issuer set (``rotating_issuer``: a Trusted Signing key; or an issuer
        among the known issuing CAs / ``[signing] extra_issuers``) the refusal is :meth:`refuse_issuer_set_cap`.
        """
        want = desired_fic(self.target, cert, version=version)
        with self.plan.step("fic", want.name, f"checking the FICs on {self.fic.target}"):
            existing = self.fic.list()
            if len(existing) + 1 > entra.FIC_CAP and entra.match_fic(existing, want).exact is None:
                keep = tuple(keep) + tuple(self.deployed_fics(component))
                self.refuse_issuer_set_cap(cert, want, existing, keep, version=version,
                                           rotating_issuer=rotating_issuer)
            return entra.ensure_fic(self.fic, want, apply=False, keep=keep, existing=existing)

    def refuse_issuer_set_cap(self, cert: x509.Certificate, want: entra.Fic, existing: list[entra.Fic],
                              in_use: tuple[entra.Fic, ...], *, version: int | None = None,
                              rotating_issuer: bool = False) -> None:
        """At the cap, for a version-2 CA-issued certificate whose issuing CA changes (production-keys §2(b);
        :func:`ppmi_build.identity.issuers.issuer_set`): raise PlanRefused (``code="FIC_CAP"``, exit 1) naming
        the FICs that could go — FICs of this environment and subject for issuers not in the issuer set
        (current issuer, the known issuing CAs, ``[signing] extra_issuers``), and FICs ppmi-build made for this
        environment that neither the deployed plug-in nor the issuer set uses — and those that must stay (in use,
        the issuer set). Returns without raising when no issuer set applies (the generic cap message follows).
        """
        from ..errors import PlanRefused
        from ..identity.dn import dotnet_name
        from ..identity.fic import dn_hash
        from ..identity.issuers import issuer_set, known_issuers

        target = self.target
        v = target.version if version is None else int(version)
        if v != 2 or cert.issuer == cert.subject:
            return
        extra = list(target.settings.signing.extra_issuers or [])
        issuer_dn, subject_dn = dotnet_name(cert.issuer), dotnet_name(cert.subject)
        if not rotating_issuer and issuer_dn not in known_issuers() + extra:
            return
        members = issuer_set(issuer_dn, subject_dn, tenant_id=target.tenant_id,
                             environment_id=target.environment_id, cloud=target.cloud, extra=extra)
        set_values = {(m.issuer, m.subject) for m in members}
        env_marker, subject_tail = f"/e/{target.environment_id}/", f"/s/{dn_hash(subject_dn)}"

        def used(f: entra.Fic) -> bool:
            return any(f.same_values(k) for k in in_use)

        in_set = [f for f in existing if (f.issuer, f.subject) in set_values and not used(f)]
        unknown_issuer = [f for f in existing if env_marker in f.subject and f.subject.endswith(subject_tail)
                          and (f.issuer, f.subject) not in set_values and not used(f)]
        stale = [f for f in existing if f.made_by_ppmi and env_marker in f.subject and not used(f)
                 and f not in in_set and f not in unknown_issuer]
        parts = []
        if unknown_issuer:
            parts.append(f"FICs of {subject_dn} for issuers not in its known issuer set (could go): "
                         + ", ".join(f.name for f in unknown_issuer))
        if stale:
            parts.append("FICs created by ppmi-build for this environment whose certificate is no longer used "
                         "(could go): " + ", ".join(f.name for f in stale))
        if not unknown_issuer and not stale:
            parts.append("no FIC of this environment is known to be unused")
        must_stay = [f.name for f in existing if used(f)]
        if must_stay:
            parts.append(f"in use by the deployed plug-in (must stay): {', '.join(must_stay)}")
        if in_set:
            parts.append(f"for the other known issuing CAs of {subject_dn} (keep: the service may switch back): "
                         + ", ".join(f.name for f in in_set))
        listed = len(unknown_issuer) + len(stale) + len(must_stay) + len(in_set)
        if len(existing) > listed:
            parts.append(f"{len(existing) - listed} other FICs (other environments, subjects or not made by "
                         "ppmi-build)")
        raise PlanRefused(
            f"{self.fic.target} already has {len(existing)} federated identity credentials, Entra's maximum is "
            f"{entra.FIC_CAP}: adding FIC {want.name} for the new issuer {issuer_dn} of {subject_dn} would exceed "
            f"it; nothing was signed or changed. {'; '.join(parts)}. Delete one that could go (in the portal, or "
            f"`ppmi-build rotate --env {target.name} --new-key CURRENT --retire-old --old-fic NAME`), then run again",
            code="FIC_CAP")

    def deployed_fics(self, component: Any) -> list[entra.Fic]:
        """The FIC the plug-in deployed as ``component`` needs (signer of the content Dataverse holds, for the
        bound record's version), or ``[]`` when nothing (readable) is deployed."""
        from ..dataverse.managed_identity import read_back

        if component is None:
            return []
        try:
            content = held_content(self.dv, component.entity_set, component.id)
            if content is None:
                return []
            signer = signer_of_bytes(content, "package" if component.kind == "pluginpackage" else "assembly")
            mi = read_back(self.dv, component).get("managedidentity")
            version = int(mi.get("version") or 0) if mi else self.target.version
            return [desired_fic(self.target, signer, version=version)]
        except PpmiError:
            return []

    # -- Dataverse ------------------------------------------------------------------------------------------

    def load_artifact(self, path: Path) -> Any:
        from ..dataverse.registration import load_artifact

        return load_artifact(path, kind=None)

    def register(self, artifact: Any) -> Any:
        from ..dataverse.actions import ActionLog
        from ..dataverse.registration import register

        plan = self.plan
        log = ActionLog()
        with plan.step("register", f"{artifact.table} {artifact.unique_name}",
                       f"registering {artifact.path.name} in {self.target.url}"):
            try:
                reg = register(self.dv, artifact, solution=self.target.solution, plan=not plan.apply, log=log,
                               force=not plan.apply and self.sign_pending, steps=self.target.settings.steps)
            finally:
                self._merge(log)
        failed = [a for a in log.actions if a.status == "failed"]
        if failed:
            raise CheckFailed(f"Dataverse does not hold what was registered: {failed[0].target}: {failed[0].detail}")
        return reg

    def bind(self, component: Any, *, version: int | None = None) -> Any:
        """Upsert the ``managedidentities`` row and bind it to ``component`` (a ``managed_identity.Target``)."""
        from ..dataverse.actions import ActionLog
        from ..dataverse.managed_identity import bind

        plan = self.plan
        log = ActionLog()
        with plan.step("bind", component.label, f"binding {component.label} to the managed identity"):
            try:
                bind(self.dv, component, identity_spec(self.target, version), plan=not plan.apply, log=log,
                     env_name=self.target.name, config_file=self.target.settings.config_file)
            finally:
                self._merge(log)
        failed = [a for a in log.actions if a.status == "failed"]
        if failed:
            raise CheckFailed(f"Dataverse does not hold the binding: {failed[0].target}: {failed[0].detail}")
        return log

    def _merge(self, log: Any) -> None:
        self.plan.extend(log.actions)
        for k, v in log.ids.items():
            self.plan.ids[k] = v

    def find_component_by_name(self) -> Any:
        """The component row for ``[plugin] name`` (used by ``--plan`` when nothing is built yet), or None."""
        from ..dataverse.client import odata_literal
        from ..dataverse.managed_identity import Target
        from ..dataverse.registration import ASSEMBLY_SELECT, PACKAGE_SELECT

        settings = self.target.settings
        name = settings.plugin.name
        if not name:
            return None
        if settings.plugin.kind == "package":
            rows = self.dv.query("pluginpackages", select=PACKAGE_SELECT, filter=f"uniquename eq {odata_literal(name)}")
            return Target.from_row("pluginpackage", rows[0]) if rows else None
        rows = self.dv.query("pluginassemblies", select=ASSEMBLY_SELECT, filter=f"name eq {odata_literal(name)}")
        rows = [r for r in rows if not r.get("_packageid_value")]
        return Target.from_row("pluginassembly", rows[0]) if rows else None

    def verify_dataverse(self, component: Any, *, expected: bytes | None, version: int | None = None,
                         record: bool = True) -> dict[str, Any]:
        """Read back and check what Dataverse holds (step 7). Returns the facts; raises CheckFailed on a mismatch.

        Checks: the component's content is ``expected`` (when given) and signed; the component is bound; the
        bound record's ``version`` is ``version`` (default: configured) and its application/tenant are ours; the
        FIC computed from the signer of the held content, for the held version, exists on the identity.
        """
        from ..dataverse.managed_identity import read_back

        plan = self.plan
        want_version = self.target.version if version is None else int(version)
        with plan.step("verify", f"{component.label} in {self.target.url}",
                       f"reading back {component.label} from Dataverse"):
            held = read_back(self.dv, component)
            problems: list[str] = []
            content = held_content(self.dv, component.entity_set, component.id)
            facts: dict[str, Any] = {"component": component.label, "component_id": component.id}
            if content is None:
                problems.append("the component has no content")
            else:
                facts["content_sha256"] = hashlib.sha256(content).hexdigest()
                if expected is not None and content != expected:
                    problems.append(f"content sha256 {facts['content_sha256']} is not the signed artifact's "
                                    f"{hashlib.sha256(expected).hexdigest()}")
            mi = held.get("managedidentity")
            bound = (held.get("component") or {}).get("_managedidentityid_value")
            facts["managedidentityid"] = bound
            if not bound or mi is None:
                problems.append("the component is not bound to a managedidentities record")
                held_version = None
            else:
                held_version = int(mi.get("version") or 0)
                facts["record_version"] = mi.get("version")
                if held_version != want_version:
                    problems.append(f"managedidentities({bound}) version is {mi.get('version')}, expected "
                                    f"{want_version}")
                if str(mi.get("applicationid", "")).lower() != self.target.application_id:
                    problems.append(f"managedidentities({bound}) applicationid is {mi.get('applicationid')}")
                if str(mi.get("tenantid", "")).lower() != self.target.tenant_id:
                    problems.append(f"managedidentities({bound}) tenantid is {mi.get('tenantid')}")
            if content is not None:
                try:
                    signer = signer_of_bytes(content, "package" if component.kind == "pluginpackage" else "assembly")
                except PpmiError as e:
                    problems.append(f"the content Dataverse holds is not signed: {e.message}")
                else:
                    facts["signer_sha256"] = cert_sha256(signer)
                    want = desired_fic(self.target, signer, version=held_version if held_version is not None
                                       else want_version)
                    m = entra.match_fic(self.fic.list(), want)
                    facts["fic_subject"] = want.subject
                    if m.exact is None:
                        extra = f"; {entra.case_only_message(want, m.case_only)}" if m.case_only else ""
                        problems.append(f"no FIC on {self.fic.target} matches the signer of the held content "
                                        f"(subject {want.subject}){extra}")
                    else:
                        facts["fic"] = m.exact.name
            if problems:
                raise CheckFailed(f"{component.label} in {self.target.url}: " + "; ".join(problems))
        if record:
            plan.add("verify", f"{component.label} in {self.target.url}", P.UNCHANGED,
                     detail=f"bound to managedidentities({facts.get('managedidentityid')}) version "
                            f"{facts.get('record_version')}, signer sha256 {facts.get('signer_sha256')} matches FIC "
                            f"{facts.get('fic')}")
        plan.extra["verified"] = facts
        return facts


def plan_unregistered_binding(run: Run, label: str) -> None:
    """Plan entries for the identity record and binding of a component that is not registered yet."""
    from ..dataverse.managed_identity import MI_SELECT

    spec = identity_spec(run.target)
    row = run.dv.retrieve("managedidentities", spec.managed_identity_id, select=MI_SELECT) \
        if spec.managed_identity_id else None
    if row is None:
        run.plan.add("managedidentity", f"{label} Identity", P.PLANNED, id=spec.managed_identity_id,
                     detail=f"create with applicationid {spec.application_id}, version {spec.version}")
    else:
        status = P.UNCHANGED if int(row.get("version") or 0) == spec.version else P.PLANNED
        run.plan.add("managedidentity", row.get("name") or label, status, id=row["managedidentityid"],
                     detail=f"version {row.get('version')} -> {spec.version}" if status == P.PLANNED else
                     f"version {spec.version}")
    run.plan.add("binding", f"{label} -> managedidentity", P.PLANNED, detail="bind after registering")


def _component_of(reg: Any) -> Any:
    from ..dataverse.managed_identity import Target

    if reg.row is None:
        return None
    return Target.from_row(reg.artifact.table, reg.row)


def attach(err: PpmiError, plan: Plan) -> PpmiError:
    """Record the plan on the error (:attr:`PpmiError.partial`) so the CLI can still print the actions done
    before it."""
    err.partial = plan
    return err


# --- release -------------------------------------------------------------------------------------------


def run_release(env_name: str, artifact: Path | str | None = None, *, plan_only: bool = False,
                start: Path | str | None = None, environ: dict[str, str] | None = None,
                progress: Callable[[str], None] | None = None, password: Any = None,
                settings: Any = None, timestamp_urls: list[str] | None = None, key: str | None = None,
                pin_env: str | None = None, cert_chain: Path | str | None = None) -> Plan:
    """Run (or with ``plan_only`` plan) a release into environment ``env_name``.

    Args:
        env_name: ``[environments.NAME]``.
        artifact: a ``.dll``/``.nupkg`` to release as it is (no build); default: build the project.
        plan_only: read only; actions say ``planned`` for every change.
        start: project folder (default: current folder / parents with ``ppmi.toml``).
        environ: environment variables (default ``os.environ``).
        progress: one line per step (stderr in the CLI).
        password: PFX password source (default ``[signing] password_env``).
        key, pin_env, cert_chain: ``--key URI``, ``--pin-env VAR``, ``--cert-chain FILE`` (:func:`load_signing_key`).
        timestamp_urls: RFC 3161 servers for the signature (``--timestamp-url``; ``[]`` = no timestamp,
            ``--no-timestamp``); None = ``[signing] timestamp_urls`` / ``PPMI_TIMESTAMP_URLS``.
    Returns:
        the :class:`Plan` (``to_json()`` is the ``--json`` document).
    Raises:
        PpmiError subclasses; the partial plan is attached as ``err.plan``.
    """
    from ..config import load_settings

    plan = Plan("release", env_name, apply=not plan_only, progress=progress)
    try:
        settings = with_timestamp_urls(settings or load_settings(start, environ=environ), timestamp_urls)
        target = EnvironmentTarget.load(settings, env_name)
        with Run(plan, target, environ) as run:
            release_steps(run, artifact, password=password, key_uri=key, pin_env=pin_env, cert_chain=cert_chain)
    except PpmiError as e:
        raise attach(e, plan) from None
    return plan


def with_timestamp_urls(settings: Any, timestamp_urls: list[str] | None) -> Any:
    """``settings`` with ``[signing] timestamp_urls`` replaced by the command line's (None: unchanged)."""
    if timestamp_urls is not None:
        settings.signing = dataclasses.replace(settings.signing, timestamp_urls=list(timestamp_urls))
    return settings


def release_steps(run: Run, artifact: Path | str | None, *, password: Any = None, key_uri: str | None = None,
                  pin_env: str | None = None, cert_chain: Path | str | None = None) -> None:
    """Steps 1–7 for one environment (see the module docstring); inputs checked first (:func:`check_inputs`)."""
    plan, target = run.plan, run.target
    run.keep_secret(password)
    with plan.step("certificate", "signing certificate", "loading the signing certificate"):
        key = load_signing_key(target.settings, password=password, environ=run.environ, key=key_uri,
                               pin_env=pin_env, cert_chain=cert_chain)
    cert = key.certificate_chain()[0]
    given = Path(artifact) if artifact is not None else None
    _, state, deployed = check_inputs(run, key, given, cert_label=f"signing certificate {key.description}")
    run.preflight_fic(cert, component=deployed,
                      rotating_issuer=str(getattr(key, "description", "")).startswith("trustedsigning:"))
    path = run.artifact_path(given)
    art: Any = None
    if path is not None:
        run.sign(path, key, state=state if given is not None else None)
        # the signed file is loaded before the FIC is created: from here on only Dataverse steps remain
        with plan.step("artifact", str(path), f"reading {path.name}"):
            art = run.load_artifact(path)
        cert = embedded_certificate(run, path, cert)
    else:
        plan.add("sign", "build output", P.PLANNED, detail="sign after the build")
    note_new_issuer(run, run.ensure_fic(cert), cert)
    if path is None:
        # --plan without an ARTIFACT: show what Dataverse holds for [plugin] name (looked up by check_inputs)
        component = deployed
        if component is None:
            plan.add("register", target.settings.plugin.name or "the plug-in", P.PLANNED,
                     detail="create after the build")
            plan_unregistered_binding(run, target.settings.plugin.name or "the plug-in")
        else:
            plan.add("register", component.label, P.PLANNED, id=component.id, detail="update content after the build")
            run.bind(component)
        return
    reg = run.register(art)
    component = _component_of(reg)
    if component is None:  # plan: not registered yet
        plan_unregistered_binding(run, f"{art.table} {art.unique_name}")
        return
    run.bind(component)
    if plan.apply:
        run.verify_dataverse(component, expected=art.data)
