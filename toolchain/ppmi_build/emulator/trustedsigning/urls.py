"""URL patterns of the emulated Trusted Signing data plane (production-keys §2(b))."""

from __future__ import annotations

import re

from ..core.routing import Route
from . import responses

CLAIMS = re.compile(r"^/codesigningaccounts/", re.IGNORECASE)

_BASE = r"^/codesigningaccounts/(?P<account>[^/]+)/certificateprofiles/(?P<profile>[^/]+)/sign"

URLS: tuple[Route, ...] = (
    Route(re.compile(_BASE + r"/?$", re.IGNORECASE), responses.sign, frozenset({"POST"})),
    Route(re.compile(_BASE + r"/(?P<operation>[^/]+)/?$", re.IGNORECASE), responses.operation, frozenset({"GET"})),
)

CONTROL: tuple[Route, ...] = (
    Route(re.compile(r"^/_emulator/trusted-signing/root/?$"), responses.root, frozenset({"GET"})),
    Route(re.compile(r"^/_emulator/trusted-signing/operations/?$"), responses.operations, frozenset({"GET"})),
    Route(re.compile(r"^/_emulator/trusted-signing/next/?$"), responses.next_outcome, frozenset({"POST"})),
)
