"""The contract between ``ppmi-build validate`` and the probe handler in the plug-in (templates/plugin/
AcquireTokenPlugin.cs.j2; the snippet in docs/usage/pipeline.md for plug-ins not scaffolded by ppmi-build).

``validate`` creates a Custom API named ``{PROBE_PREFIX}<short hash>`` bound to the plug-in type, with one String
response property :data:`PROBE_RESULT` (validation.md §7). When the plug-in runs for a message whose name starts
with :data:`PROBE_PREFIX`, the probe handler calls ``IManagedIdentityService.AcquireToken`` for its scopes and sets
:data:`PROBE_RESULT` to a JSON object (and writes the same line, prefixed by :data:`PROBE_MARKER`, to the trace):

* ``{"probe": PROBE_MARKER, "ok": true, "aud": str, "appid": str, "tid": str, "exp": int, "scopes": str}`` — the
  non-secret claims of the token it obtained (never the token);
* ``{"probe": PROBE_MARKER, "ok": false, "code": "AADSTS…" | null, "message": str, "scopes": str}`` — the
  exception's AADSTS code and message.

The handler's code holds :data:`PROBE_MARKER` as a string literal, so its presence in an assembly's ``#US`` heap
(UTF-16LE) tells that the plug-in answers the probe.
"""

from __future__ import annotations

import json
import re
from typing import Any

PROBE_MARKER = "ppmi-validate-probe/1"
PROBE_PREFIX = "ppmi_validate_"
PROBE_RESULT = "ppmi_probe_result"
AADSTS_RE = re.compile(r"AADSTS\d+")


def has_probe_handler(assembly_image: bytes) -> bool:
    """True when a .NET assembly image holds the probe marker as a user string (UTF-16LE)."""
    return PROBE_MARKER.encode("utf-16-le") in assembly_image


def parse_probe_result(text: str | None) -> dict[str, Any] | None:
    """The probe's JSON result (see the module docstring), from the response property or a trace line that holds
    :data:`PROBE_MARKER`; None when there is none or it is not a probe result."""
    if not text:
        return None
    start = text.find("{")
    while start != -1:
        try:
            value, _end = json.JSONDecoder().raw_decode(text, start)
        except ValueError:
            value = None
        if isinstance(value, dict) and value.get("probe") == PROBE_MARKER:
            return value
        start = text.find("{", start + 1)
    return None
