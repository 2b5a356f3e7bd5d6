"""``ppmi-build doctor``: what is installed and usable, and what is wrong with the configuration.

Checks, each ``{"name", "category", "status", "detail"}`` with ``status`` one of ``ok`` / ``warn`` /
``fail`` / ``skipped`` (DESIGN.md §3 ``doctor`` -> ``checks``):

* ``tools``: dotnet, signtool, nuget, osslsigncode, Mono ``sn``, openssl — found on PATH and their version.
  None is required by the built-in signer, so a missing tool is a warning (dotnet is needed by ``build``).
* ``config``: ``ppmi.toml`` found; tenant, application, object IDs are GUIDs; ``fic_target`` has its ID;
  record version (2 recommended, domain-spec §1.2); each environment has a URL and an environment ID.
* ``certificate``: the signing certificate opens; code-signing EKU; RSA >= 2048; self-signed (development
  only, domain-spec §5); expiry: ``fail`` when expired or not yet valid, ``warn`` within
  :data:`EXPIRY_WARN_DAYS` (30) days.
* ``identity:fics``: the FICs of the app registration (Graph) or UAMI (ARM) can be listed with the configured
  endpoint and credentials: ``fail`` when the token is missing or refused or the endpoint does not answer.
* ``environment:<name>``: Dataverse answers with the configured URL and credentials (``fail`` otherwise: doctor is
  a CI preflight); the FIC the deployed plug-in needs exists on the identity (exact, case-sensitive match; a
  case-only difference is reported, domain-spec §1.7); the ``managedidentities`` record's ``version``; the
  configured signing certificate is the one that signed what the environment runs (``warn`` otherwise: the next
  ``release`` would re-sign with it, e.g. after a ``rotate`` when ``[signing] certificate`` was not updated).

* ``sandbox:<file>``: the sandbox lint (:func:`ppmi_build.project.sandbox.lint_artifact`) of each artifact of the
  last ``build`` (``.ppmi/last-build.json``) and of each ``--artifact``: ``warn`` naming the assembly or package
  and the fix (a strong-named assembly referencing one that is not, Azure SDK versions known to fail in the
  sandbox, over 16 MB, a package missing a referenced assembly), ``ok`` otherwise.

The exit code is 1 when a check failed, 0 otherwise (warnings do not fail).
"""

from __future__ import annotations

import datetime as _dt
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from ..errors import PpmiError

OK, WARN, FAIL, SKIPPED = "ok", "warn", "fail", "skipped"
#: Warn this many days before the signing certificate expires: time to rotate it without downtime (``rotate``).
EXPIRY_WARN_DAYS = 30

#: tool -> (argv for its version, what needs it)
TOOLS: dict[str, tuple[list[str], str]] = {
    "dotnet": (["dotnet", "--version"], "`ppmi-build build` (dotnet build/pack)"),
    "signtool": (["signtool", "/?"], "--backend signtool (Windows)"),
    "nuget": (["nuget", "help"], "--backend nuget"),
    "osslsigncode": (["osslsigncode", "--version"], "--backend osslsigncode and independent verification"),
    "sn": (["sn", "-h"], "strong-name checks (Mono sn)"),
    "openssl": (["openssl", "version"], "independent signature checks"),
}


@dataclass
class Check:
    name: str
    category: str
    status: str
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "category": self.category, "status": self.status, "detail": self.detail}


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)

    def add(self, name: str, category: str, status: str, detail: str = "") -> Check:
        c = Check(name, category, status, " ".join(str(detail).split()))
        self.checks.append(c)
        return c

    @property
    def failed(self) -> bool:
        return any(c.status == FAIL for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        counts = {s: sum(1 for c in self.checks if c.status == s) for s in (OK, WARN, FAIL, SKIPPED)}
        return {"ok": not self.failed, "summary": counts, "checks": [c.to_json() for c in self.checks]}

    def human(self) -> str:
        marks = {OK: "ok  ", WARN: "WARN", FAIL: "FAIL", SKIPPED: "skip"}
        width = max((len(c.name) for c in self.checks), default=10)
        lines = [f"{marks[c.status]}  {c.name.ljust(width)}  {c.detail}" for c in self.checks]
        s = self.to_json()["summary"]
        lines.append(f"{s[OK]} ok, {s[WARN]} warnings, {s[FAIL]} failed, {s[SKIPPED]} skipped")
        return "\n".join(lines)


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:120]
    return ""


def check_tools(report: DoctorReport, *, which: Callable[[str], str | None] = shutil.which,
                run: Callable[..., Any] = subprocess.run) -> None:
    """Find each tool of :data:`TOOLS` on PATH and read its version line (5 s timeout each). The tools run
    without the secrets of :func:`ppmi_build.config.secret_env_names` in their environment."""
    from ..config import scrubbed_environ

    env = scrubbed_environ()
    for name, (argv, needed_for) in TOOLS.items():
        path = which(argv[0])
        if path is None:
            if name == "signtool" and not sys.platform.startswith("win"):
                report.add(f"tool:{name}", "tools", SKIPPED, "Windows only; the built-in signer replaces it")
            else:
                report.add(f"tool:{name}", "tools", WARN, f"not found on PATH; needed for {needed_for}")
            continue
        try:
            res = run([path, *argv[1:]], capture_output=True, text=True, timeout=5, stdin=subprocess.DEVNULL,
                      env=env)
            version = _first_line(res.stdout) or _first_line(res.stderr)
        except (OSError, subprocess.SubprocessError) as e:
            report.add(f"tool:{name}", "tools", WARN, f"{path} does not run: {e}")
            continue
        report.add(f"tool:{name}", "tools", OK, f"{path}: {version}" if version else path)


def _guid(value: str | None, label: str) -> tuple[str, str]:
    from ..identity.guids import parse_guid

    if not value:
        return FAIL, f"{label} is not set"
    try:
        return OK, parse_guid(value, label).value
    except PpmiError as e:
        return FAIL, e.message


def check_config(report: DoctorReport, settings: Any) -> None:
    """Configuration problems (DESIGN.md §4), one check per setting that matters."""
    if settings.config_file is None:
        report.add("config:file", "config", WARN, f"no ppmi.toml in {settings.root} or its parents; "
                                                  "run `ppmi-build init` or use PPMI_* variables")
    else:
        report.add("config:file", "config", OK, str(settings.config_file))
    ident = settings.identity
    for key, label in (("tenant_id", "tenant ID"), ("application_id", "application ID")):
        status, detail = _guid(getattr(ident, key), label)
        if status == FAIL and not getattr(ident, key):
            detail += f"; set [identity] {key} or PPMI_{key.upper()}"
        report.add(f"config:identity.{key}", "config", status, detail)
    if ident.fic_target == "app":
        status, detail = _guid(ident.application_object_id, "application object ID")
        if status == FAIL and not ident.application_object_id:
            detail += " (needed to manage FICs of the app registration through Graph)"
        report.add("config:identity.application_object_id", "config", status, detail)
    else:
        from ..entra.arm import UAMI_RE as _UAMI_RE

        rid = ident.uami_resource_id or ""
        ok = bool(_UAMI_RE.match(rid.rstrip("/")))
        report.add("config:identity.uami_resource_id", "config", OK if ok else FAIL,
                   rid if ok else f"{rid or 'not set'}: not a userAssignedIdentities resource ID")
    if ident.version == 2:
        report.add("config:identity.version", "config", OK, "2 (recommended)")
    else:
        report.add("config:identity.version", "config", WARN,
                   f"{ident.version}: version {ident.version} is {'deprecated' if ident.version == 0 else 'CN-based'}"
                   "; move to 2 with `ppmi-build upgrade --env NAME --to 2`")
    if not settings.environments:
        report.add("config:environments", "config", WARN, "no [environments.NAME] configured")
    for name, env in sorted(settings.environments.items()):
        problems = []
        if not env.url:
            problems.append("url is not set")
        elif not (env.url.startswith("https://") or env.url.startswith("http://127.0.0.1")
                  or env.url.startswith("http://localhost")):
            problems.append(f"url {env.url} is not https")
        status, detail = _guid(env.environment_id, "environment ID")
        if status == FAIL:
            problems.append(detail)
        report.add(f"config:environments.{name}", "config", FAIL if problems else OK,
                   "; ".join(problems) if problems else f"{env.url} (environment {detail})")


def check_certificate(report: DoctorReport, settings: Any, *, now: _dt.datetime | None = None,
                      environ: dict[str, str] | None = None) -> Any:
    """Open the signing certificate and check it. Returns the leaf certificate or None."""
    from ..signing.keys import NO_KEY_MESSAGE, PasswordSource, resolve_signing_key

    now = now or _dt.datetime.now(_dt.UTC)
    try:  # the key the other commands would use (resolve_signing_key's precedence), never prompting
        source = resolve_signing_key(settings, environ=environ, interactive=False, require_private_key=False,
                                     password=PasswordSource(env=settings.signing.password_env, interactive=False))
    except PpmiError as e:
        if e.message == NO_KEY_MESSAGE:
            report.add("certificate", "certificate", WARN, "no signing certificate configured; set [signing] "
                                                           "certificate or key, PPMI_CERT (or PPMI_PFX_BASE64 in CI)")
        else:
            report.add("certificate", "certificate", FAIL, e.message)
        return None
    certs, label = source.certificate_chain(), source.description
    cert = certs[0]
    from cryptography.hazmat.primitives.asymmetric import rsa

    from ..identity.certificates import describe

    d = describe(cert)
    report.add("certificate", "certificate", OK, f"{label}: {d['subject']} (SHA-1 {d['thumbprint_sha1']})")
    days = (cert.not_valid_after_utc - now).total_seconds() / 86400
    if cert.not_valid_before_utc > now:
        report.add("certificate:validity", "certificate", FAIL, f"not valid before {d['not_before']}")
    elif days < 0:
        report.add("certificate:validity", "certificate", FAIL,
                   f"expired on {d['not_after']}; make or buy a new one and run `ppmi-build rotate`")
    elif days < EXPIRY_WARN_DAYS:
        report.add("certificate:validity", "certificate", WARN,
                   f"expires in {int(days)} days ({d['not_after']}); rotate now with "
                   "`ppmi-build rotate --env NAME --new-cert PATH`")
    else:
        report.add("certificate:validity", "certificate", OK, f"valid until {d['not_after']} ({int(days)} days)")
    report.add("certificate:code-signing", "certificate", OK if d["code_signing"] else FAIL,
               "codeSigning EKU present" if d["code_signing"] else
               "no codeSigning EKU (1.3.6.1.5.5.7.3.3); NuGet and Authenticode signing need it")
    pub = cert.public_key()
    bits = pub.key_size if isinstance(pub, rsa.RSAPublicKey) else 0
    report.add("certificate:key", "certificate", OK if bits >= 2048 else FAIL,
               d["key"] if bits >= 2048 else f"{d['key']}: NuGet needs RSA >= 2048 bits (NU3014)")
    if d["self_signed"]:
        report.add("certificate:self-signed", "certificate", WARN,
                   "self-signed: fine for development, not supported by Dataverse for production")
    return cert


def _deployed(target: Any, environ: dict[str, str] | None) -> tuple[Any, Any, Any, str]:
    """What the environment runs: ``(component, managedidentity row or None, signer of the held content or
    None, what is wrong with the held content's signature or "")`` for ``[plugin] name``; ``(None, None, None,
    "")`` when nothing is registered under that name. The signer counts only when the signature is intact
    (:func:`ppmi_build.pipeline.signatures.signature_check_bytes`)."""
    from ..dataverse.managed_identity import read_back
    from .plan import Plan
    from .release import Run, held_content
    from .signatures import signature_check_bytes

    with Run(Plan("doctor", target.name, apply=False), target, environ) as run:
        component = run.find_component_by_name()
        if component is None:
            return None, None, None, ""
        mi = read_back(run.dv, component).get("managedidentity")
        content = held_content(run.dv, component.entity_set, component.id)
        if content is None:
            return component, mi, None, f"{component.label} holds no content"
        kind = "package" if component.kind == "pluginpackage" else "assembly"
        label = f"the content Dataverse holds for {component.label}"
        check = signature_check_bytes(content, kind, label)
        return component, mi, (check.signer if check.intact else None), ("" if check.intact else
                                                                          check.summary(label))


def near_misses(existing: list[Any], want: Any) -> list[str]:
    """The FICs in ``existing`` that are almost ``want`` (an ``entra.Fic``) — each field equal, equal but for
    letter case, or different in at most 3 characters (a typo such as ``enviornment``) — each as one clause with
    the exact difference: ``FIC 'x': issuer has 'enviornment' where 'environment' is required (character 52)``.
    Entra matches issuer, subject and audience case-sensitively and exactly (domain-spec §1.7, AADSTS7002138)."""
    out = []
    for fic in existing:
        if fic.same_values(want):
            continue
        diffs = []
        close = True
        for label, got, need in (("issuer", fic.issuer, want.issuer), ("subject", fic.subject, want.subject),
                                 ("audience", fic.audience, want.audience)):
            d = _difference(got, need)
            if d is None:
                continue
            text, small = d
            close = close and small
            diffs.append(f"{label} has {text}")
        if diffs and close:
            out.append(f"FIC {fic.name!r}: " + "; ".join(diffs))
    return out


def _difference(got: str, need: str) -> tuple[str, bool] | None:
    """``(description, is_small)`` of how ``got`` differs from ``need`` (None when equal). The differing part is
    widened to whole words (letters and digits) so that a transposition reads ``'enviornment' where
    'environment'``; small = letter case only, or at most 3 characters differ."""
    if got == need:
        return None
    p = 0
    while p < min(len(got), len(need)) and got[p] == need[p]:
        p += 1
    s = 0
    while s < min(len(got), len(need)) - p and got[-1 - s] == need[-1 - s]:
        s += 1
    core_got, core_need = got[p:len(got) - s], need[p:len(need) - s]
    small = max(len(core_got), len(core_need)) <= 3
    if got.lower() == need.lower():
        small = True
    a = p
    while a > 0 and need[a - 1].isalnum():
        a -= 1
    b_need, b_got = len(need) - s, len(got) - s
    while b_need < len(need) and need[b_need].isalnum():
        b_need += 1
        b_got += 1
    shown_got, shown_need = got[a:b_got], need[a:b_need]
    case = ", letter case only" if shown_got.lower() == shown_need.lower() else ""
    return f"{shown_got!r} where {shown_need!r} is required (character {a + 1}{case})", small


def _same_certificate(a: Any, b: Any) -> bool:
    from ..identity.certificates import sha256_hex

    return sha256_hex(a) == sha256_hex(b)


def _cert_label(cert: Any) -> str:
    from ..identity.certificates import describe

    d = describe(cert)
    return f"{d['subject']} (SHA-1 {d['thumbprint_sha1']})"


def check_environments(report: DoctorReport, settings: Any, cert: Any, *,
                       environ: dict[str, str] | None = None) -> None:
    """Per environment: Dataverse connectivity, the managed identity record's version, the FIC on the identity,
    and whether the configured certificate signed what is deployed.

    Failing to reach Graph/ARM or Dataverse (no token, token refused, endpoint unreachable) is a ``fail``: doctor
    is a CI preflight and ``release`` would fail the same way. The FIC checked is the one the *deployed* plug-in
    needs (signer of the content Dataverse holds, for the bound record's version): missing = ``fail`` (the plug-in
    cannot get tokens). When nothing is deployed under ``[plugin] name`` yet, the configured certificate's FIC for
    the configured version is checked: missing = ``warn`` (``release`` adds it). A FIC that differs only in letter
    case is always a ``fail`` (AADSTS7002138).
    """
    from .. import entra
    from ..http.retry import RetryPolicy
    from .release import EnvironmentTarget, desired_fic, read_record_version

    if not settings.environments:
        return
    client = None
    fic_problem = ""
    existing = None
    try:
        client = entra.client_from_settings(settings.identity, environ=environ,
                                            retry=RetryPolicy.from_env(environ, max_retries=1, backoff_base=0.2))
    except PpmiError as e:  # a configuration problem, already a failed config check
        fic_problem = e.message
        report.add("identity:fics", "identity", SKIPPED, f"no FIC endpoint: {e.message}")
    if client is not None:
        try:
            existing = client.list()
            report.add("identity:fics", "identity", OK, f"{len(existing)} FIC{'' if len(existing) == 1 else 's'} "
                                                        f"on {client.target} (Entra's maximum is {entra.FIC_CAP})")
        except PpmiError as e:
            fic_problem = e.message
            report.add("identity:fics", "identity", FAIL, f"cannot list the FICs of {client.target}: {e.message}")
    for name in sorted(settings.environments):
        try:
            target = EnvironmentTarget.load(settings, name)
        except PpmiError as e:
            report.add(f"environment:{name}", "environment", SKIPPED, e.message)
            continue
        component: Any
        mi: Any
        signer: Any
        component = mi = signer = None
        record_problem = content_problem = ""
        try:
            component, mi, signer, content_problem = _deployed(target, environ)
            if component is None:
                version, record_id = read_record_version(target, environ=environ)
                mi = {"managedidentityid": record_id, "version": version} if record_id else None
        except PpmiError as e:
            record_problem = e.message
        # Dataverse itself, then the record
        if record_problem:
            report.add(f"environment:{name}:dataverse", "environment", FAIL,
                       f"cannot read {target.url}: {record_problem}")
        else:
            report.add(f"environment:{name}:dataverse", "environment", OK, f"{target.url} answers")
            if not mi:
                what = f"{component.label} is not bound" if component else "no managedidentities record yet"
                report.add(f"environment:{name}:record", "environment", WARN,
                           f"{what}; `ppmi-build release --env {name}` creates and binds it")
            else:
                raw = mi.get("version")
                if int(raw or 0) == 2:
                    report.add(f"environment:{name}:record", "environment", OK,
                               f"managedidentities({mi['managedidentityid']}) version 2")
                else:
                    report.add(f"environment:{name}:record", "environment", WARN,
                               f"managedidentities({mi['managedidentityid']}) version "
                               f"{raw if raw is not None else 'null (v0)'}; run `ppmi-build upgrade --env {name} "
                               "--to 2`")
        # the signature of what Dataverse holds: a bound component with unsigned or broken content cannot work
        if content_problem:
            report.add(f"environment:{name}:content", "environment", FAIL if mi else WARN,
                       f"{content_problem}; " + ("its managed identity cannot work (the FIC matches the signer of "
                                                 "the content)" if mi else "binding it will fail (Dataverse error "
                                                 "0x80040216)") + f"; run `ppmi-build release --env {name}`")
        # the configured certificate against the signer of what is deployed
        if signer is not None and cert is not None and not _same_certificate(signer, cert):
            report.add(f"environment:{name}:certificate", "environment", WARN,
                       f"the deployed {component.label} is signed by {_cert_label(signer)}, the configured signing "
                       f"certificate is {_cert_label(cert)}: the next `ppmi-build release --env {name}` re-signs "
                       "with the configured one and needs its FIC; after `ppmi-build rotate`, point [signing] "
                       "certificate at the new certificate")
        # the FIC
        check = f"environment:{name}:fic"
        deployed = signer is not None and mi is not None
        use_cert = signer if deployed else cert
        if use_cert is None:
            report.add(check, "environment", SKIPPED, "no usable signing certificate and nothing deployed")
            continue
        if existing is None:
            report.add(check, "environment", SKIPPED, f"the FICs could not be listed: {fic_problem}")
            continue
        try:
            want = desired_fic(target, use_cert, version=int(mi.get("version") or 0) if deployed else None)
        except PpmiError as e:
            report.add(check, "environment", FAIL, e.message)
            continue
        m = entra.match_fic(existing, want)
        near = near_misses(existing, want)
        whose = (f"the deployed {component.label} (version {int(mi.get('version') or 0)})" if deployed
                 else f"the configured certificate (version {target.version})")
        if m.exact:
            report.add(check, "environment", OK,
                       f"FIC {m.exact.name!r} on {cast(entra.FicClient, client).target} matches {whose}")
            if near:
                report.add(f"{check}:near-miss", "environment", WARN,
                           "; ".join(near) + " — unused (Entra matches exactly); delete it")
        elif near:
            report.add(check, "environment", FAIL,
                       f"no FIC on {cast(entra.FicClient, client).target} matches {whose} exactly; "
                       + "; ".join(near) + "; Entra matches issuer, subject and audience exactly and "
                       "case-sensitively (AADSTS7002138, AADSTS700213): fix or delete it and run "
                       f"`ppmi-build release --env {name}`")
        elif m.case_only:
            report.add(check, "environment", FAIL, entra.case_only_message(want, m.case_only))
        else:
            report.add(check, "environment", FAIL if deployed else WARN,
                       f"no FIC for {whose} on {cast(entra.FicClient, client).target} (subject {want.subject}); run "
                       f"`ppmi-build release --env {name}`")
    if client is not None:
        client.close()


def build_outputs(settings: Any) -> list[Path]:
    """The primary artifact of the project's last ``ppmi-build build`` (``.ppmi/last-build.json``: the ``.dll``
    registered as a ``pluginassembly`` or the ``.nupkg`` registered as a ``pluginpackage``), or ``[]``."""
    from ..project.dotnet import last_build

    data = last_build(settings.root) or {}
    return [Path(data["primary"])] if data.get("primary") else []


def check_sandbox(report: DoctorReport, artifacts: list[Path]) -> None:
    """One ``sandbox:<file name>`` check per artifact: ``warn`` with the lint's findings, ``ok`` without."""
    from ..project.sandbox import sandbox_warnings

    for path in dict.fromkeys(artifacts):
        if not path.is_file():
            report.add(f"sandbox:{path.name}", "sandbox", FAIL, f"{path}: no such file; build the project first "
                       "or pass the right --artifact path")
            continue
        found = sandbox_warnings(path)
        if found:
            report.add(f"sandbox:{path.name}", "sandbox", WARN, "; ".join(found))
        else:
            report.add(f"sandbox:{path.name}", "sandbox", OK, f"{path}: nothing known to fail in the Dataverse sandbox")


def run_doctor(start: Path | str | None = None, *, environ: dict[str, str] | None = None,
               now: _dt.datetime | None = None, which: Callable[[str], str | None] = shutil.which,
               online: bool = True, artifacts: list[Path] | None = None) -> DoctorReport:
    """Run every check. Never raises for a problem it can report; a broken ``ppmi.toml`` is a ``fail`` check.

    Args:
        start: project folder (default: current folder, searching parents for ``ppmi.toml``).
        environ: environment variables (default ``os.environ``).
        now: clock for the expiry check (UTC).
        online: False skips the Graph/ARM/Dataverse checks.
        artifacts: more ``.dll``/``.nupkg`` files for the sandbox lint (besides the last build's output).
    """
    from ..config import load_settings

    report = DoctorReport()
    check_tools(report, which=which)
    try:
        settings = load_settings(start, environ=environ)
    except PpmiError as e:
        report.add("config:file", "config", FAIL, e.message)
        return report
    check_config(report, settings)
    cert = check_certificate(report, settings, now=now, environ=environ)
    check_sandbox(report, build_outputs(settings) + [Path(a) for a in artifacts or []])
    if online:
        check_environments(report, settings, cert, environ=environ)
    return report
