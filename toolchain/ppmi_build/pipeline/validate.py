"""``ppmi-build validate --env NAME [ARTIFACT] [--json] [--plan] [--keep]``: prove, in the environment, that the
bound plug-in gets a token — or say exactly which string is wrong and where (validation.md §4, §7; domain-spec §6).

Checks, each one action (``unchanged`` = passed, ``failed``):

* ``check-signature`` — the content Dataverse holds is signed (integrity; trust is not required, domain-spec §5) and,
  with ARTIFACT, is byte-identical to it; the signer's SHA-256 is named;
* ``check-version`` — the bound ``managedidentities`` record's ``version`` is ``[identity] version``;
* ``check-identity`` — the component is bound to a record with our ``applicationid`` and ``tenantid``;
* ``dataverse-fic`` — Dataverse's own subject (``GetComponentManagedIdentityFIC``, validation.md §4) equals the
  subject computed from the held signer and record version (exact, case-sensitive; the first differing index is
  named); where the environment does not offer the function, a note and the computed subject;
* ``check-fic`` — a FIC on the identity (Graph/ARM) has that subject, the issuer and the audience of the cloud, exactly.

Then the invocation (not with ``checks_only``): the probe Custom API ``ppmi_validate_<8 hex of sha256(plugintype
id)>`` bound to the plug-in type (reused when it exists), plug-in trace logging set to All (2) when it is not,
``POST {uniquename}``, the ``plugintracelogs`` of the type since the call; in ``finally`` the setting is restored and
the Custom API deleted (unless ``keep``). Plug-ins without the probe handler (:mod:`ppmi_build.project.probe`) get
every check and a note on how to add it.

Result (``validation`` in the JSON document): ``{"status": "valid" | "invalid" | "checked", "claims"?,
"diagnosis"?: [{"code", "cause", "fix"}], "expected": {issuer, subject, audience}, "dataverse_subject"?,
"closest_fic"?, "trace"?: [str], "requests": {"dataverse": n}}``. Exit 0 valid (or all checks passed without an
invocation), 1 invalid (:class:`~ppmi_build.errors.CheckFailed`), 3 a service failed.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import entra
from ..errors import CheckFailed, PpmiError
from ..identity.certificates import sha256_hex as cert_sha256
from ..project.probe import AADSTS_RE, PROBE_PREFIX, PROBE_RESULT, has_probe_handler, parse_probe_result
from . import plan as P
from .plan import Plan
from .release import EnvironmentTarget, Run, attach, desired_fic, held_content, signer_of_bytes

PROBE_DOC = "docs/usage/pipeline.md, 'The validate probe'"

#: AADSTS code -> (cause, fix) (domain-spec §6)
AADSTS: dict[str, tuple[str, str]] = {
    "AADSTS700213": ("no federated identity credential on the identity matches the subject the platform presented",
                     "add a FIC with exactly the expected subject (ppmi-build release creates it), or bind the "
                     "record version the FIC was made for"),
    "AADSTS7002138": ("a FIC matches only when letter case is ignored; Entra compares issuer, subject and audience "
                      "case-sensitively (domain-spec §1.7)",
                      "replace that FIC's value with the exact string (ppmi-build release creates the right one)"),
    "AADSTS70050": ("the subject has characters Entra rejects: a version 1 subject built from a certificate CN "
                    "with non-ASCII characters",
                    "move the managed identity record and the FIC to version 2 (ppmi-build upgrade)"),
    "AADSTS700211": ("no FIC on the identity has the issuer the platform presented (tenant, cloud, v0 vs v1+ "
                     "issuer, trailing slash)",
                     "set the FIC issuer to the expected issuer exactly"),
    "AADSTS700212": ("the FIC's audience is not the one the platform presented (case or sovereign-cloud audience)",
                     "set the FIC audience to the expected audience exactly"),
    "AADSTS70021": ("no matching FIC; also seen for a few minutes after a FIC is created (propagation)",
                    "wait a few minutes and run ppmi-build validate again"),
}


def probe_name(plugintype_id: str) -> str:
    """``ppmi_validate_`` + the first 8 hex digits of SHA-256 of the plug-in type id (lower case)."""
    return PROBE_PREFIX + hashlib.sha256(plugintype_id.lower().encode("ascii")).hexdigest()[:8]


def _integrity_problems(data: bytes, kind: str, signer: Any) -> list[str]:
    """Signature problems of held content other than trust (a private CA or self-signed signer is fine)."""
    import os
    import tempfile

    from ..signing.api import verify_file

    fd, name = tempfile.mkstemp(prefix="ppmi-held-", suffix=".nupkg" if kind == "pluginpackage" else ".dll")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        result = verify_file(name, trusted_roots=[signer])
    finally:
        os.unlink(name)
    trust = ("not trusted", "trusted root", "untrusted")  # chain trust of the signer or the TSA is not required
    return [p for p in result.problems if not p.startswith(("signify: ", "no trusted roots"))
            and not any(t in p for t in trust)]


def closest_fic(fics: list[entra.Fic], subject: str) -> entra.Fic | None:
    """The FIC whose subject is most like ``subject`` (difflib ratio; ties: the first), or None."""
    best, score = None, -1.0
    for f in fics:
        s = difflib.SequenceMatcher(None, f.subject, subject).ratio()
        if s > score:
            best, score = f, s
    return best


class Validation:
    """The facts and the verdict of one validate run (``to_json`` is the ``validation`` document)."""

    def __init__(self) -> None:
        self.status = "checked"
        self.failed: list[str] = []
        self.claims: dict[str, Any] | None = None
        self.diagnosis: list[dict[str, Any]] = []
        self.facts: dict[str, Any] = {}

    def fail(self, text: str) -> None:
        self.failed.append(text)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, **self.facts}
        if self.claims is not None:
            out["claims"] = self.claims
        if self.diagnosis:
            out["diagnosis"] = self.diagnosis
        if self.failed:
            out["problems"] = list(self.failed)
        return out


def _check(plan: Plan, v: Validation, kind: str, target: str, ok: bool, detail: str) -> None:
    plan.add(kind, target, P.UNCHANGED if ok else P.FAILED, detail=detail)
    if not ok:
        v.fail(f"{kind}: {detail}")


def _component(run: Run, artifact: Path | None) -> tuple[Any, Any]:
    from ..dataverse.managed_identity import Target
    from ..dataverse.registration import find_component, load_artifact

    if artifact is not None:
        art = load_artifact(artifact, kind=None)
        row = find_component(run.dv, art)
        if row is not None and art.kind == "assembly" and row.get("_packageid_value"):
            row = None
        return art, (Target.from_row(art.table, row) if row is not None else None)
    return None, run.find_component_by_name()


def check_component(run: Run, v: Validation, component: Any, art: Any) -> dict[str, Any]:
    """The checks of the module docstring for ``component`` (a ``managed_identity.Target``). Returns the facts the
    invocation needs (``content``, ``signer``, ``expected`` Fic, ``fics``, ``held_version``)."""
    from ..dataverse.component_fic import component_fic, describe_difference
    from ..dataverse.managed_identity import read_back

    plan, target, dv = run.plan, run.target, run.dv
    kind = component.kind
    ctx: dict[str, Any] = {}
    with plan.step("check-signature", component.label, f"reading the content of {component.label}"):
        content = held_content(dv, component.entity_set, component.id)
        if content is None:
            raise CheckFailed(f"{component.label} in {target.url} has no content; run ppmi-build release")
        signer = signer_of_bytes(content, "package" if kind == "pluginpackage" else "assembly")
        problems = _integrity_problems(content, kind, signer)
        if art is not None and art.data != content:
            problems.append(f"the content Dataverse holds (sha256 {hashlib.sha256(content).hexdigest()}) is not "
                            f"{art.path.name} (sha256 {hashlib.sha256(art.data).hexdigest()})")
    from ..identity.certificates import describe

    who = describe(signer)["subject"]
    v.facts["signer"] = {"subject": who, "sha256": cert_sha256(signer)}
    _check(plan, v, "check-signature", component.label, not problems,
           "; ".join(problems) if problems else f"signed by {who}, certificate sha256 {cert_sha256(signer)}")
    ctx.update(content=content, signer=signer)

    with plan.step("check-identity", component.label, "reading the bound managed identity"):
        held = read_back(dv, component)
    mi = held.get("managedidentity")
    bound = (held.get("component") or {}).get("_managedidentityid_value")
    if not bound or mi is None:
        _check(plan, v, "check-identity", component.label, False, "not bound to a managedidentities record; run "
                                                            "ppmi-build release (or bind)")
        held_version = target.version
    else:
        held_version = int(mi.get("version") or 0)
        wrong = [f"{col} is {mi.get(col)}, expected {want}" for col, want in
                 (("applicationid", target.application_id), ("tenantid", target.tenant_id))
                 if str(mi.get(col, "")).lower() != want]
        _check(plan, v, "check-identity", f"managedidentities({bound})", not wrong,
               "; ".join(wrong) if wrong else f"application {target.application_id}, tenant {target.tenant_id}")
        ok = held_version == target.version
        _check(plan, v, "check-version", f"managedidentities({bound})", ok,
               f"version {held_version}" if ok else
               f"the record's version is {mi.get('version')}, [identity] version is {target.version}: the platform "
               f"presents the version {held_version} subject, the FIC ppmi-build made is for version "
               f"{target.version} (version mismatch)")
    v.facts["record_version"] = held_version
    expected = desired_fic(target, signer, version=held_version)
    ctx.update(expected=expected, held_version=held_version)
    v.facts["expected"] = {"issuer": expected.issuer, "subject": expected.subject, "audience": expected.audience}
    if held_version != target.version:
        configured = desired_fic(target, signer)
        v.facts["configured_version_subject"] = configured.subject

    with plan.step("dataverse-fic", component.label, "asking Dataverse for its FIC subject"):
        answer = component_fic(dv, component.id, kind)
    subject = expected.subject
    if answer.offered and answer.subject is not None:
        v.facts["dataverse_subject"] = answer.subject
        same = answer.subject == expected.subject
        _check(plan, v, "dataverse-fic", component.label, same,
               f"Dataverse presents {answer.subject}" if same else
               describe_difference("Dataverse's FICSubject", answer.subject, "the computed subject", expected.subject))
        subject = answer.subject
    else:
        plan.note(f"{answer.reason}; using the subject computed from the signer and record version")
        plan.add("dataverse-fic", component.label, P.UNCHANGED, detail=f"not offered: {answer.reason}; computed "
                                                                        f"subject {expected.subject}")

    with plan.step("check-fic", run.fic.target, f"reading the FICs on {run.fic.target}"):
        fics = run.fic.list()
    ctx["fics"] = fics
    want = entra.Fic(name=expected.name, issuer=expected.issuer, subject=subject, audiences=(expected.audience,))
    m = entra.match_fic(fics, want)
    if m.exact is not None:
        _check(plan, v, "check-fic", f"{run.fic.target}: {m.exact.name}", True,
               f"issuer, subject and audience match exactly ({expected.issuer}, {expected.audience})")
    else:
        near = closest_fic(fics, subject)
        if near is not None:
            v.facts["closest_fic"] = {"name": near.name, "issuer": near.issuer, "subject": near.subject,
                                      "audience": near.audience}
        parts = [f"no FIC on {run.fic.target} has issuer {expected.issuer}, subject {subject}, audience "
                 f"{expected.audience} exactly"]
        if m.case_only:
            parts.append(entra.case_only_message(want, m.case_only))
        elif near is not None:
            for label, a, b in (("subject", near.subject, subject), ("issuer", near.issuer, expected.issuer),
                                ("audience", near.audience, expected.audience)):
                if a != b:
                    parts.append(f"closest FIC {near.name!r}: " + describe_difference(f"its {label}", a, "expected", b))
        _check(plan, v, "check-fic", run.fic.target, False, "; ".join(parts))
    return ctx


def _types(dv: Any, component: Any) -> list[dict[str, Any]]:
    from ..dataverse.client import odata_literal  # noqa: F401 - same OData helpers as the client

    sel = ["plugintypeid", "typename", "_pluginassemblyid_value"]
    if component.kind == "pluginassembly":
        return dv.query("plugintypes", select=sel, filter=f"_pluginassemblyid_value eq {component.id}")
    out: list[dict[str, Any]] = []
    for a in dv.query("pluginassemblies", select=["pluginassemblyid", "name"],
                      filter=f"_packageid_value eq {component.id}"):
        out += dv.query("plugintypes", select=sel, filter=f"_pluginassemblyid_value eq {a['pluginassemblyid']}")
    return out


def _pick_type(types: list[dict[str, Any]], probe_type: str | None) -> dict[str, Any] | None:
    if probe_type:
        return next((t for t in types if t["typename"] == probe_type), None)
    return next((t for t in types if t["typename"].split(".")[-1] == "AcquireTokenPlugin"), None)


def diagnose(code: str | None, message: str, v: Validation) -> dict[str, Any]:
    """``{code, cause, fix, message}`` for an AADSTS code (domain-spec §6), with the expected subject and the
    closest FIC for AADSTS700213 and the case-only FIC for AADSTS7002138."""
    cause, fix = AADSTS.get(code or "", ("the token request failed", "see the message and the trace"))
    exp = v.facts.get("expected", {})
    near = v.facts.get("closest_fic")
    if code == "AADSTS700213":
        cause += f"; expected subject {exp.get('subject')}"
        if near:
            cause += f"; closest FIC {near['name']!r} has subject {near['subject']}"
        if v.facts.get("configured_version_subject") and v.facts.get("record_version") is not None:
            cause += (f"; the record is version {v.facts['record_version']} (version mismatch with the FIC's "
                      "format)")
    elif code == "AADSTS7002138":
        cause = "case-only difference: " + cause
        if near:
            cause += f"; FIC {near['name']!r} has {near['subject']}, the platform presents {exp.get('subject')}"
    elif code == "AADSTS700211":
        fix += f" ({exp.get('issuer')})"
    elif code == "AADSTS700212":
        fix += f" ({exp.get('audience')})"
    return {"code": code, "cause": cause, "fix": fix, "message": message}


def invoke_probe(run: Run, v: Validation, component: Any, ctx: dict[str, Any], *, keep: bool,
                 probe_type: str | None) -> None:
    """Create/reuse the probe Custom API, run it with trace logging on, read the trace; always clean up."""
    from ..dataverse import customapi as C
    from ..errors import DataverseError

    plan, dv = run.plan, run.dv
    with plan.step("plugintype", component.label, f"reading the plug-in types of {component.label}"):
        types = _types(dv, component)
    ptype = _pick_type(types, probe_type)
    if ptype is None:
        names = ", ".join(sorted(t["typename"] for t in types)) or "none"
        plan.add("probe", component.label, P.UNCHANGED,
                 detail=f"not invoked: no plug-in type {probe_type or '*.AcquireTokenPlugin'} (types: {names}); "
                        "pass --probe-type TYPENAME")
        plan.note("validate ran every check but did not run the plug-in: " +
                  ("no plugintype rows (a standalone assembly gets them from register)" if not types else
                   f"name the plug-in type that answers the probe with --probe-type ({PROBE_DOC})"))
        return
    image = ctx["content"] if component.kind == "pluginassembly" else held_content(
        dv, "pluginassemblies", ptype["_pluginassemblyid_value"])
    if not has_probe_handler(image or b""):
        plan.add("probe", ptype["typename"], P.UNCHANGED,
                 detail="not invoked: the plug-in has no probe handler (not scaffolded by ppmi-build)")
        plan.note(f"{ptype['typename']} does not answer the validate probe; add the handler from {PROBE_DOC} to "
                  "run the plug-in for real")
        return
    name = probe_name(ptype["plugintypeid"])
    v.facts["probe"] = {"customapi": name, "plugintype": ptype["typename"]}
    with plan.step("customapi", name, f"looking for the probe Custom API {name}"):
        probe = C.find_probe(dv, name)
        org_id, setting = C.trace_setting(dv)
    if not plan.apply:
        if probe is None:
            plan.add("customapi", name, P.PLANNED, detail=f"create bound to plugintype {ptype['typename']}, "
                                                          f"response property {PROBE_RESULT} (String)")
        if setting != C.TRACE_ALL:
            plan.add("trace", f"organizations({org_id})", P.PLANNED,
                     detail=f"plugintracelogsetting {setting} -> 2 for the call, then back to {setting}")
        plan.add("invoke", name, P.PLANNED, detail=f"POST {name}; read plugintracelogs of {ptype['typename']}")
        if not keep:
            plan.add("customapi", name, P.PLANNED, detail="delete after the call")
        return
    changed_setting = False
    try:
        if probe is None:
            with plan.step("customapi", name, f"creating the probe Custom API {name}"):
                probe = C.create_probe(dv, name, ptype["plugintypeid"], PROBE_RESULT)
            plan.add("customapi", name, P.CREATED, detail=f"bound to plugintype {ptype['typename']}", id=probe.id)
        else:
            plan.add("customapi", name, P.UNCHANGED, detail="reused", id=probe.id)
        if setting != C.TRACE_ALL:
            with plan.step("trace", f"organizations({org_id})", "turning plug-in trace logging on"):
                C.set_trace_setting(dv, org_id, C.TRACE_ALL)
            changed_setting = True
            plan.add("trace", f"organizations({org_id})", P.UPDATED, detail=f"plugintracelogsetting {setting} -> 2")
        since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        response: dict[str, Any] = {}
        thrown = ""
        with plan.step("invoke", name, f"running {ptype['typename']} through {name}"):
            try:
                response = C.invoke(dv, name)
            except DataverseError as e:
                if e.status != 400:  # the plug-in's exception is a 400 with its message; anything else: exit 3
                    raise
                thrown = e.server_message or e.message
        with plan.step("trace", ptype["typename"], "reading plugintracelogs"):
            logs = C.trace_logs(dv, ptype["typename"], since)
        trace = [str(r.get("messageblock") or "") + ("\n" + r["exceptiondetails"] if r.get("exceptiondetails")
                                                      else "") for r in logs]
        v.facts["trace"] = trace
        result = parse_probe_result(response.get(PROBE_RESULT)) or next(
            (r for r in (parse_probe_result(t) for t in trace) if r), None)
        if result is None and thrown:
            hit = AADSTS_RE.search(thrown)
            result = {"ok": False, "code": hit.group(0) if hit else None, "message": thrown}
        if result is None:
            v.status = "invalid"
            plan.add("invoke", name, P.FAILED, detail="the plug-in answered without a probe result; is trace "
                                                      "logging allowed and the probe handler current?")
            v.fail("invoke: no probe result")
        elif result.get("ok"):
            v.status = "valid"
            v.claims = {k: result.get(k) for k in ("aud", "appid", "tid", "exp")}
            plan.add("invoke", name, P.UNCHANGED,
                     detail=f"token obtained: aud {result.get('aud')}, appid {result.get('appid')}, tid "
                            f"{result.get('tid')}, exp {result.get('exp')}")
        else:
            found = AADSTS_RE.search(str(result.get("message")))
            code = result.get("code") or (found.group(0) if found else None)
            d = diagnose(code, str(result.get("message") or ""), v)
            v.diagnosis.append(d)
            v.status = "invalid"
            plan.add("invoke", name, P.FAILED, detail=f"{code or 'error'}: {d['cause']}; fix: {d['fix']}")
            v.fail(f"invoke: {code or 'error'}: {d['cause']}")
    finally:
        if changed_setting:
            try:
                C.set_trace_setting(dv, org_id, setting)
                plan.add("trace", f"organizations({org_id})", P.ROLLED_BACK, detail=f"plugintracelogsetting back to "
                                                                                     f"{setting}")
            except PpmiError as e:
                plan.add("trace", f"organizations({org_id})", P.FAILED, error=f"could not restore "
                                                                              f"plugintracelogsetting {setting}: "
                                                                              f"{e.message}")
        if probe is not None and not keep:
            try:
                C.delete_probe(dv, probe)
                plan.add("customapi", name, P.DELETED, detail="probe removed")
            except PpmiError as e:
                plan.add("customapi", name, P.FAILED, error=f"could not delete the probe: {e.message}")


def validate_steps(run: Run, artifact: Path | None, *, invoke: bool = True, keep: bool = False,
                   probe_type: str | None = None) -> Validation:
    """Checks, then (``invoke``) the probe; records ``validation`` in the plan. Raises CheckFailed when a check
    fails or the probe shows no token."""
    plan, target = run.plan, run.target
    v = Validation()
    with plan.step("component", target.settings.plugin.name or str(artifact), "looking up the component"):
        art, component = _component(run, artifact)
    if component is None and not plan.apply:
        plan.add("validate", target.settings.plugin.name or str(artifact), P.PLANNED,
                 detail="check and run the plug-in once it is registered")
        return v
    if component is None:
        what = f"{art.table} {art.unique_name}" if art is not None else \
            f"[plugin] name {target.settings.plugin.name!r}"
        raise CheckFailed(f"{what} is not registered in {target.url}; run ppmi-build release --env {target.name}")
    try:
        ctx = check_component(run, v, component, art)
        if invoke:
            invoke_probe(run, v, component, ctx, keep=keep, probe_type=probe_type)
    finally:
        v.facts["requests"] = {"dataverse": getattr(run.dv, "requests_sent", None)}
        plan.extra["validation"] = v.to_json()
    if v.failed:
        v.status = "invalid"
        plan.extra["validation"] = v.to_json()
        raise CheckFailed(f"{component.label} in {target.url} is not valid: " + "; ".join(v.failed))
    return v


def run_validate(env_name: str, artifact: Path | str | None = None, *, plan_only: bool = False, keep: bool = False,
                 invoke: bool = True, probe_type: str | None = None, start: Path | str | None = None,
                 environ: dict[str, str] | None = None, progress: Callable[[str], None] | None = None,
                 settings: Any = None, plan: Plan | None = None) -> Plan:
    """Run ``validate`` for environment ``env_name`` (see the module docstring).

    Args:
        artifact: the released ``.dll``/``.nupkg`` (compared with what Dataverse holds); default: the component
            named by ``[plugin] name``.
        plan_only: read only; what the probe would create is ``planned``.
        keep: leave the probe Custom API in place.
        invoke: run the plug-in through the probe (False: checks only, as ``release`` does by default).
        probe_type: the plug-in type that answers the probe (default: ``*.AcquireTokenPlugin``).
        plan: add the actions to this plan (``release``'s final step) instead of a new one.
    Returns:
        the :class:`Plan`; ``plan.extra["validation"]`` is the result.
    Raises:
        CheckFailed (exit 1), BadInput (2), ServiceError (3); the plan is attached as ``err.plan``.
    """
    from ..config import load_settings

    plan = plan or Plan("validate", env_name, apply=not plan_only, progress=progress)
    try:
        settings = settings or load_settings(start, environ=environ)
        target = EnvironmentTarget.load(settings, env_name)
        with Run(plan, target, environ) as run:
            validate_steps(run, Path(artifact) if artifact is not None else None, invoke=invoke, keep=keep,
                           probe_type=probe_type)
    except PpmiError as e:
        raise attach(e, plan) from None
    return plan


def dataverse_fic(env_name: str, artifact: Path | str | None = None, *, start: Path | str | None = None,
                  environ: dict[str, str] | None = None, settings: Any = None) -> dict[str, Any]:
    """``fic --env NAME --from-dataverse``: what Dataverse says the component's FIC subject is, next to the subject
    computed from the signer of the content it holds and the bound record's version.

    Returns:
        ``{"component", "component_id", "offered", "dataverse_subject", "computed_subject", "issuer", "audience",
        "record_version", "same", "difference"?, "note"?}``.
    Raises:
        CheckFailed: the component is not registered. DataverseError / ConfigError.
    """
    from ..config import load_settings
    from ..dataverse.component_fic import component_fic, describe_difference
    from ..dataverse.managed_identity import read_back

    settings = settings or load_settings(start, environ=environ)
    target = EnvironmentTarget.load(settings, env_name)
    plan = Plan("fic", env_name, apply=False)
    with Run(plan, target, environ) as run:
        art, component = _component(run, Path(artifact) if artifact is not None else None)
        if component is None:
            what = f"{art.table} {art.unique_name}" if art is not None else f"[plugin] name {settings.plugin.name!r}"
            raise CheckFailed(f"{what} is not registered in {target.url}; run ppmi-build release --env {env_name}")
        answer = component_fic(run.dv, component.id, component.kind)
        content = held_content(run.dv, component.entity_set, component.id)
        mi = read_back(run.dv, component).get("managedidentity")
    version = int(mi.get("version") or 0) if mi else target.version
    out: dict[str, Any] = {"component": component.label, "component_id": component.id, "offered": answer.offered,
                           "dataverse_subject": answer.subject, "record_version": version}
    if content is not None:
        signer = signer_of_bytes(content, "package" if component.kind == "pluginpackage" else "assembly")
        want = desired_fic(target, signer, version=version)
        out.update(computed_subject=want.subject, issuer=want.issuer, audience=want.audience)
        if answer.subject is not None:
            out["same"] = answer.subject == want.subject
            if not out["same"]:
                out["difference"] = describe_difference("Dataverse's FICSubject", answer.subject,
                                                        "the computed subject", want.subject)
    if not answer.offered:
        out["note"] = f"{answer.reason}; showing the computed subject"
    return out
