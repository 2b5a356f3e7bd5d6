"""The emulator's control surface ``/_emulator/…`` for tests and rehearsals (DESIGN.md §3 "The emulator").

No token is needed. Endpoints: ``POST /_emulator/faults`` (a fault object or a list, see :mod:`.faults`) ->
``201 {"added", "pending"}``; ``GET /_emulator/faults``; ``DELETE /_emulator/faults`` -> 204;
``GET /_emulator/requests`` -> every request served so far (``{method, path, status, query, time, fault}``);
``POST /_emulator/reset`` -> 204 (every row, fault and logged request deleted); ``GET /_emulator/health``; plus the
control routes services declare (:attr:`.routing.Service.control`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from .responses import Response, empty, json_response
from .routing import Request, Route, Service, match_route
from .state import EmulatorState


def control(state: EmulatorState, services: Sequence[Service], method: str, path: str, body: bytes) -> Response:
    """Answer one ``/_emulator/…`` request (no token needed)."""
    if path == "/_emulator/faults" and method == "POST":
        try:
            spec = json.loads(body or b"{}")
            specs = spec if isinstance(spec, list) else [spec]
            added = [state.add_fault(s) for s in specs]
        except (ValueError, TypeError, AttributeError) as e:
            return json_response(400, {"error": {"code": "", "message": f"bad fault: {e}"}})
        return json_response(201, {"added": len(added), "pending": len(state.faults.pending)})
    if path == "/_emulator/faults" and method == "DELETE":
        state.clear_faults()
        return empty(204)
    if path == "/_emulator/faults" and method == "GET":
        return json_response(200, state.faults.snapshot())
    if path == "/_emulator/requests" and method == "GET":
        return json_response(200, state.requests())
    if path == "/_emulator/reset" and method == "POST":
        state.reset()
        return empty(204)
    if path == "/_emulator/health" and method == "GET":
        return json_response(200, {"ok": True, "url": state.base_url})
    routes: list[Route] = [r for s in services for r in s.control]
    found = match_route(routes, method, path)
    if found is not None:
        route, m = found
        response = route.handler(Request(state, method, path, body=body), m)
        if response is not None:
            return response
    return json_response(404, {"error": {"code": "", "message": f"unknown control endpoint {method} {path}"}})
