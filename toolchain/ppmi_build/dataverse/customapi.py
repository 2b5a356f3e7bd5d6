"""The ``validate`` probe in Dataverse: a Custom API bound to a plug-in type, plug-in trace logging, and the trace
logs (validation.md §7).

1. ``POST customapis`` ``{"uniquename", "name", "displayname", "bindingtype": 0, "isfunction": false,
   "allowedcustomprocessingsteptype": 0, "PluginTypeId@odata.bind": "/plugintypes(<id>)"}``;
2. ``POST customapiresponseproperties`` ``{"uniquename", "name", "displayname", "type": 10,
   "CustomAPIId@odata.bind": "/customapis(<id>)"}`` (String);
3. ``PATCH organizations(<id>)`` ``{"plugintracelogsetting": 2}`` (0 Off, 1 Exception, 2 All);
4. ``POST {uniquename}`` (unbound action) -> the response properties;
5. ``GET plugintracelogs?$filter=typename eq '<type>' and createdon ge <t>&$orderby=createdon desc``;
6. setting restored; Custom API deleted (its response properties go with it).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from .client import odata_literal

STRING_TYPE = 10  # customapiresponseproperty.type String
TRACE_ALL = 2


@dataclass
class Probe:
    """A probe Custom API: ``id``, ``uniquename``, the plug-in type it runs, and whether this run created it."""

    id: str
    uniquename: str
    plugintype_id: str
    created: bool = False


def find_probe(dv: Any, uniquename: str) -> Probe | None:
    """The ``customapis`` row named ``uniquename`` (None when there is none)."""
    rows = dv.query("customapis", select=["customapiid", "uniquename", "_plugintypeid_value"],
                    filter=f"uniquename eq {odata_literal(uniquename)}")
    if not rows:
        return None
    r = rows[0]
    return Probe(r["customapiid"], r["uniquename"], str(r.get("_plugintypeid_value") or ""))


def create_probe(dv: Any, uniquename: str, plugintype_id: str, result_property: str) -> Probe:
    """Create the Custom API and its one String response property (two POSTs). Raises DataverseError."""
    api_id = str(uuid.uuid4())
    dv.create("customapis", {
        "customapiid": api_id, "uniquename": uniquename, "name": uniquename,
        "displayname": "ppmi-build validate probe", "description": "Created by ppmi-build validate; safe to delete.",
        "bindingtype": 0, "isfunction": False, "allowedcustomprocessingsteptype": 0,
        "PluginTypeId@odata.bind": f"/plugintypes({plugintype_id})"}, id_column="customapiid", id=api_id,
        select=["customapiid"], solution="")
    prop_id = str(uuid.uuid4())
    dv.create("customapiresponseproperties", {
        "customapiresponsepropertyid": prop_id, "uniquename": result_property, "name": result_property,
        "displayname": "Probe result", "type": STRING_TYPE, "CustomAPIId@odata.bind": f"/customapis({api_id})"},
        id_column="customapiresponsepropertyid", id=prop_id, select=["customapiresponsepropertyid"], solution="")
    return Probe(api_id, uniquename, plugintype_id, created=True)


def delete_probe(dv: Any, probe: Probe) -> bool:
    """Delete the Custom API (its response properties go with it). False when it was already gone."""
    return bool(dv.delete("customapis", probe.id))


def invoke(dv: Any, uniquename: str) -> dict[str, Any]:
    """``POST {uniquename}`` with an empty body -> the response JSON (its response properties).
    Raises DataverseError (the plug-in's exception message is in ``server_message``)."""
    resp = dv.request("POST", uniquename, body=b"{}", ok=(200, 204))
    return resp.json() if resp.status_code == 200 and resp.content else {}


def trace_setting(dv: Any) -> tuple[str, int]:
    """``(organizationid, plugintracelogsetting)`` of the environment's organization row."""
    rows = dv.query("organizations", select=["organizationid", "plugintracelogsetting"], top=1)
    if not rows:
        from ..errors import DataverseError

        raise DataverseError(f"GET organizations at {dv.url} returned no row")
    return rows[0]["organizationid"], int(rows[0].get("plugintracelogsetting") or 0)


def set_trace_setting(dv: Any, organization_id: str, value: int) -> None:
    """``PATCH organizations(<id>) {"plugintracelogsetting": value}``."""
    dv.update("organizations", organization_id, {"plugintracelogsetting": value})


def utc_stamp(when: dt.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` (an OData ``Edm.DateTimeOffset`` literal), truncated to the second."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def trace_logs(dv: Any, typename: str, since: dt.datetime) -> list[dict[str, Any]]:
    """The ``plugintracelogs`` rows of plug-in type ``typename`` created at or after ``since``, newest first."""
    return dv.query("plugintracelogs",
                    select=["typename", "messagename", "messageblock", "exceptiondetails", "correlationid",
                            "createdon"],
                    filter=f"typename eq {odata_literal(typename)} and createdon ge {utc_stamp(since)}",
                    orderby="createdon desc")
