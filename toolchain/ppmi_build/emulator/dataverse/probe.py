"""The platform side of ``ppmi-build validate``: Dataverse running a plug-in that asks for a token, and Entra ID
exchanging it (validation.md §4, §7; domain-spec §1, §6).

* ``GET GetComponentManagedIdentityFIC(ComponentId=…,ComponentName='pluginassembly'|'pluginpackage')`` (also
  with parameter aliases ``(ComponentId=@id,ComponentName=@n)?@id=…&@n='…'``) answers
  ``{"FICSubject": …}`` (complex type ``GetComponentManagedIdentityFICResponse``, validation.md §4): the subject
  the platform presents for the component — computed from the signer of the content it holds
  (:func:`.artifacts.signer_of`) and the bound ``managedidentity``'s ``version``, tenant and the environment ID,
  with :func:`ppmi_build.identity.fic.compute_fic`.
* ``POST {uniquename}`` of a ``customapi`` row runs its plug-in type (unbound action). The emulator plays the
  plug-in when its assembly holds the probe handler (:data:`ppmi_build.project.probe.PROBE_MARKER`), the
  platform (the subject above) and Entra: a FIC on the identity (the Graph/ARM store,
  :mod:`ppmi_build.emulator.entra.models`) whose issuer, subject and audience equal the presented ones exactly
  gives a token; otherwise the AADSTS error Entra gives (domain-spec §6): case-only difference ``AADSTS7002138``;
  issuer unknown ``AADSTS700211``; issuer and subject known but audience not ``AADSTS700212``; subject not
  formattable (v1 non-ASCII CN) ``AADSTS70050``; anything else ``AADSTS700213`` with the presented subject. The
  probe's result is the response property :data:`~ppmi_build.project.probe.PROBE_RESULT`, and a
  ``plugintracelog`` row holds the trace when ``organization.plugintracelogsetting`` is 2 (All).

Settings (``state.options``, also set through ``POST /_emulator/dataverse/platform``):

* ``environment_id`` — the Power Platform environment ID of this emulated environment. Without it the
  environment does not offer ``GetComponentManagedIdentityFIC`` (``404`` ``0x8006088a``, as an unknown segment)
  and the probe cannot compute a subject (its result names the missing setting).
* ``applications`` — ``{applicationid: {"object_id": …, "uami_resource_id": …}}``: where the identity's FICs are
  kept (the emulator has no application directory; an application is always found by appId in the Graph store).
* ``cloud`` — ``public`` (default), ``usgov``, ``china``, ``usnat``, ``ussec``.
* ``fic_subject`` — a string answered by ``GetComponentManagedIdentityFIC`` instead of the computed subject
  (to show a platform that disagrees with ppmi-build); null removes it.
* ``probe_scope`` — the scope the probe handler asks for (default ``https://vault.azure.net/.default``,
  validation.md §7 step 5); the token's ``aud`` is the scope without ``/.default``.

Not found in public sources (emulator choices): the error ``GetComponentManagedIdentityFIC`` gives for a component
without a managed identity (here ``400`` ``0x80040203``), and the exact wording of the AADSTS messages beyond their
documented beginnings.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import uuid
from typing import Any

from ...errors import PpmiError
from ...identity.fic import compute_fic
from ...project.probe import PROBE_MARKER, PROBE_PREFIX, PROBE_RESULT, has_probe_handler
from ..arm.models import owner as uami_owner
from ..core.responses import ApiError, Response, json_response, odata_error
from ..core.routing import Request
from ..entra import models as entra
from ..graph.models import owner as app_owner
from .artifacts import signer_of
from .models import (
    BAD_SEGMENT_CODE,
    ENTITIES,
    INVALID_ARGUMENT_CODE,
    NOT_FOUND_CODE,
    b64,
    get_row,
    guid,
    insert,
    next_version,
    now,
)

DEFAULT_SCOPE = "https://vault.azure.net/.default"
OPTION_KEYS = ("environment_id", "applications", "cloud", "fic_subject", "probe_scope")
_ARG_RE = re.compile(r"\s*(?P<name>[A-Za-z]+)\s*=\s*(?P<value>'(?:[^']|'')*'|[^,]+)\s*(?:,|$)")


class PlatformFailure(Exception):
    """The platform cannot present a subject (not bound, not signed, no environment ID); ``message`` is what the
    token request fails with."""


# --- organization ------------------------------------------------------------------------------------------


def organization_id(db: sqlite3.Connection) -> str:
    """The environment's organization id (the ``OrganizationId`` ``WhoAmI`` answers)."""
    r = db.execute("SELECT value FROM emulator_meta WHERE key = 'OrganizationId'").fetchone()
    if r is not None:
        return str(r[0])
    oid = str(uuid.uuid4())
    db.execute("INSERT INTO emulator_meta (key, value) VALUES ('OrganizationId', ?)", (oid,))
    return oid


def ensure_organization(state: Any) -> None:
    """Create the environment's one ``organization`` row (``plugintracelogsetting`` 0, Off) when missing."""
    with state.lock:
        oid = organization_id(state.db)
        if get_row(state.db, ENTITIES["organizations"], oid) is None:
            stamp = now()
            insert(state.db, ENTITIES["organizations"], {
                "organizationid": oid, "name": "emulator", "plugintracelogsetting": 0, "createdon": stamp,
                "modifiedon": stamp, "versionnumber": next_version()})


def trace_setting(state: Any) -> int:
    ensure_organization(state)
    with state.lock:
        r = state.db.execute("SELECT plugintracelogsetting FROM organization").fetchone()
    return int(r[0] or 0) if r else 0


# --- the subject the platform presents ---------------------------------------------------------------------


def _component(db: sqlite3.Connection, kind: str, cid: str) -> dict[str, Any] | None:
    ent = ENTITIES["pluginpackages" if kind == "pluginpackage" else "pluginassemblies"]
    return get_row(db, ent, cid)


def presented_fic(state: Any, kind: str, row: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``(FicValues, managedidentity row)`` the platform presents for component ``row`` of table ``kind``.

    Raises:
        PlatformFailure: not bound, content not signed, no environment ID configured.
        PpmiError: the subject cannot be formed (e.g. a v1 CN Entra rejects).
    """
    env_id = state.options.get("environment_id")
    if not env_id:
        raise PlatformFailure("the emulator has no environment_id (POST /_emulator/dataverse/platform)")
    mid = row.get("managedidentityid")
    mi = get_row(state.db, ENTITIES["managedidentities"], mid) if mid else None
    if mi is None:
        raise PlatformFailure(f"ManagedIdentityServiceProviderAcquireToken: the {kind} {row.get('name')} is not "
                              "associated with a managed identity")
    try:
        signer = signer_of(b64(row.get("content") or "", "content"), kind)
    except (ValueError, ApiError) as e:
        raise PlatformFailure(f"ManagedIdentityServiceProviderAcquireToken: the {kind} content is not signed "
                              f"({getattr(e, 'message', e)})") from None
    values = compute_fic(signer, tenant_id=mi.get("tenantid"), environment_id=env_id,
                         version=int(mi.get("version") or 0), cloud=state.options.get("cloud") or "public")
    return values, mi


def identity_fics(state: Any, application_id: str) -> list[tuple[Any, ...]]:
    """The FICs (:data:`~ppmi_build.emulator.entra.models.FicRow`) of the application or UAMI whose client id is
    ``application_id``, from the Graph/ARM store."""
    where = (state.options.get("applications") or {}).get(str(application_id).lower()) or {}
    owners = [app_owner(str(application_id).lower(), by_app_id=True)]
    if where.get("object_id"):
        owners.append(app_owner(str(where["object_id"]), by_app_id=False))
    if where.get("uami_resource_id"):
        owners.append(uami_owner(str(where["uami_resource_id"])))
    out: list[tuple[Any, ...]] = []
    with state.lock:
        for o in owners:
            out.extend(tuple(r) for r in entra.rows(state.db, o))
    return out


def exchange(values: Any, fics: list[tuple[Any, ...]]) -> tuple[str | None, str]:
    """Entra's answer to the presented ``values`` (issuer, subject, audience) against ``fics``:
    ``(None, fic name)`` for a match, else ``(AADSTS code, message)`` (domain-spec §6)."""
    iss, sub, aud = values.issuer, values.subject, values.audience
    triples = [(r[2], r[3], (json.loads(r[4]) or [""])[0], r[1]) for r in fics]
    for i, s, a, name in triples:
        if (i, s, a) == (iss, sub, aud):
            return None, name
    for i, s, a, _n in triples:
        if (i.casefold(), s.casefold(), a.casefold()) == (iss.casefold(), sub.casefold(), aud.casefold()):
            return "AADSTS7002138", (f"AADSTS7002138: The federated identity credential with subject '{s}' matches "
                                     f"the presented assertion subject '{sub}' with case-insensitive comparison, "
                                     "but not with case-sensitive comparison.")
    if triples and not any(i == iss for i, _s, _a, _n in triples) and any(s == sub for _i, s, _a, _n in triples):
        return "AADSTS700211", (f"AADSTS700211: No matching federated identity record found for presented assertion "
                                f"issuer '{iss}'. Please check your federated identity credential Subject, Audience "
                                "and Issuer against the presented assertion.")
    if any(i == iss and s == sub for i, s, _a, _n in triples):
        return "AADSTS700212", (f"AADSTS700212: No matching federated identity record found for presented assertion "
                                f"audience '{aud}'. Please check your federated identity credential Subject, "
                                "Audience and Issuer against the presented assertion.")
    return "AADSTS700213", (f"AADSTS700213: No matching federated identity record found for presented assertion "
                            f"subject '{sub}'. Please check your federated identity credential Subject, Audience "
                            "and Issuer against the presented assertion.")


# --- GetComponentManagedIdentityFIC ------------------------------------------------------------------------


def _function_args(req: Request, text: str) -> dict[str, str]:
    args: dict[str, str] = {}
    for m in _ARG_RE.finditer(text):
        value = m.group("value").strip()
        if value.startswith("@"):
            value = req.query.get(value, "")
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1].replace("''", "'")
        args[m.group("name")] = value
    return args


def get_component_fic(req: Request, m: re.Match[str]) -> Response:
    """``GET GetComponentManagedIdentityFIC(ComponentId=…,ComponentName=…)`` (see the module docstring)."""
    state = req.state
    if not state.options.get("environment_id"):
        return odata_error(404, BAD_SEGMENT_CODE, "Resource not found for the segment "
                                                  "'GetComponentManagedIdentityFIC'.")
    try:
        args = _function_args(req, m.group("args"))
        name = args.get("ComponentName", "")
        if name not in ("pluginassembly", "pluginpackage"):
            raise ApiError(400, INVALID_ARGUMENT_CODE, f"ComponentName '{name}' is not a component with a managed "
                                                       "identity; use 'pluginassembly' or 'pluginpackage'.")
        cid = guid(args.get("ComponentId", "").strip("{}"), "ComponentId")
        with state.lock:
            row = _component(state.db, name, cid)
        if row is None:
            raise ApiError(404, NOT_FOUND_CODE, f"{name} With Id = {cid} Does Not Exist")
        override = state.options.get("fic_subject")
        if override is not None:
            subject = str(override)
        else:
            try:
                subject = presented_fic(state, name, row)[0].subject
            except (PlatformFailure, PpmiError) as e:
                raise ApiError(400, INVALID_ARGUMENT_CODE, getattr(e, "message", None) or str(e)) from None
    except ApiError as e:
        return odata_error(e.status, e.code, e.message)
    root = f"{getattr(state, 'base_url', '')}{m.group('root')}"
    return json_response(200, {"@odata.context": f"{root}/$metadata#Microsoft.Dynamics.CRM."
                                                 "GetComponentManagedIdentityFICResponse", "FICSubject": subject})


# --- custom API invocation ---------------------------------------------------------------------------------


def _claims(state: Any, mi: dict[str, Any]) -> dict[str, Any]:
    scope = state.options.get("probe_scope") or DEFAULT_SCOPE
    aud = scope[: -len("/.default")] if scope.endswith("/.default") else scope
    return {"aud": aud, "appid": mi.get("applicationid"), "tid": mi.get("tenantid"), "exp": int(time.time()) + 3599,
            "scopes": scope}


def run_probe(state: Any, kind: str, component: dict[str, Any]) -> dict[str, Any]:
    """What the probe handler returns for ``component``: the token's claims or the AADSTS error."""
    scope = state.options.get("probe_scope") or DEFAULT_SCOPE
    try:
        values, mi = presented_fic(state, kind, component)
    except PlatformFailure as e:
        return {"probe": PROBE_MARKER, "ok": False, "code": None, "message": str(e), "scopes": scope}
    except PpmiError as e:
        return {"probe": PROBE_MARKER, "ok": False, "code": "AADSTS70050",
                "message": f"AADSTS70050: The Federated Managed Identity path is not properly formatted. ({e.message})",
                "scopes": scope}
    code, text = exchange(values, identity_fics(state, str(mi.get("applicationid") or "")))
    if code is None:
        return {"probe": PROBE_MARKER, "ok": True, **_claims(state, mi)}
    return {"probe": PROBE_MARKER, "ok": False, "code": code, "message": text, "scopes": scope}


def invoke_custom_api(state: Any, api_root: str, name: str, body: dict[str, Any]) -> Response:
    """``POST {name}``: run the plug-in type of the ``customapi`` whose ``uniquename`` is ``name``."""
    db = state.db
    with state.lock:
        api = db.execute("SELECT * FROM customapi WHERE uniquename = ? COLLATE NOCASE", (name,)).fetchone()
        api = dict(api) if api else None
    if api is None:
        raise ApiError(404, BAD_SEGMENT_CODE, f"Resource not found for the segment '{name}'.")
    with state.lock:
        props = [dict(r) for r in db.execute("SELECT uniquename FROM customapiresponseproperty WHERE customapiid = ?",
                                             (api["customapiid"],))]
        ptype = get_row(db, ENTITIES["plugintypes"], api["plugintypeid"]) if api.get("plugintypeid") else None
        asm = get_row(db, ENTITIES["pluginassemblies"], ptype["pluginassemblyid"]) if ptype else None
    if ptype is None or asm is None:
        raise ApiError(400, INVALID_ARGUMENT_CODE, f"The custom API {name} has no plug-in type to run.")
    if asm.get("packageid"):
        kind, component = "pluginpackage", _component(db, "pluginpackage", asm["packageid"])
    else:
        kind, component = "pluginassembly", asm
    image = b64(asm.get("content") or "", "content") if asm.get("content") else b""
    outputs: dict[str, Any] = {p["uniquename"]: None for p in props}
    lines = [f"Entered {ptype['typename']}.Execute() correlation id {uuid.uuid4()}, message {api['uniquename']}, "
             "depth 1."]
    if component is not None and has_probe_handler(image) and api["uniquename"].lower().startswith(PROBE_PREFIX):
        result = run_probe(state, kind, component)
        text = json.dumps(result, separators=(",", ":"))
        lines.append(f"{PROBE_MARKER} {text}")
        if PROBE_RESULT in outputs:
            outputs[PROBE_RESULT] = text
    lines.append(f"Exiting {ptype['typename']}.Execute().")
    if trace_setting(state) == 2:
        stamp = now()
        with state.lock:
            insert(db, ENTITIES["plugintracelogs"], {
                "plugintracelogid": str(uuid.uuid4()), "typename": ptype["typename"],
                "messagename": api["uniquename"], "messageblock": "\n".join(lines), "exceptiondetails": "",
                "correlationid": str(uuid.uuid4()), "primaryentity": "none", "mode": 0, "operationtype": 1,
                "depth": 1, "performanceexecutionduration": 1, "createdon": stamp, "modifiedon": stamp,
                "versionnumber": next_version()})
    return json_response(200, {"@odata.context": f"{api_root}/$metadata#Microsoft.Dynamics.CRM."
                                                 f"{api['uniquename']}Response", **outputs})


# --- control ------------------------------------------------------------------------------------------------


def platform_control(req: Request, m: re.Match[str]) -> Response:
    """``GET``/``POST /_emulator/dataverse/platform``: read or set the settings of the module docstring
    (``POST`` merges the given keys; null removes one)."""
    state = req.state
    if req.method == "POST":
        try:
            data = json.loads(req.body or b"{}")
            if not isinstance(data, dict):
                raise ValueError("a JSON object is needed")
            unknown = set(data) - set(OPTION_KEYS)
            if unknown:
                raise ValueError(f"unknown keys {sorted(unknown)}; known: {list(OPTION_KEYS)}")
        except ValueError as e:
            return json_response(400, {"error": {"code": "", "message": f"bad platform settings: {e}"}})
        with state.lock:
            for k, v in data.items():
                if v is None:
                    state.options.pop(k, None)
                elif k == "applications":
                    apps = dict(state.options.get("applications") or {})
                    apps.update({str(a).lower(): dict(w) for a, w in v.items()})
                    state.options[k] = apps
                else:
                    state.options[k] = v
    with state.lock:
        return json_response(200, {k: state.options.get(k) for k in OPTION_KEYS})
