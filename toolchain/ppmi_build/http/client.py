"""The httpx client factory and the URL and message rules every HTTP client of ppmi-build follows.

* **TLS for bearer tokens** (RFC 6750 §5.3: tokens must be sent over TLS): a service URL that receives a token
  (Dataverse, Graph, ARM, Key Vault, Trusted Signing) must be ``https://``; plain ``http://`` is accepted only for
  loopback hosts (127.0.0.0/8, ``::1``, ``localhost``, ``*.localhost``) so the local emulator works
  (:func:`check_url`). RFC 3161 time-stamp URLs carry no token and may be ``http://`` (:func:`check_urls`;
  most public TSAs serve plain http, signing-spec §1.7).
* **Timeouts**: connect 10 s; read/write ``PPMI_HTTP_TIMEOUT`` seconds (default 120 s, long enough for a 16 MB
  upload). Every ``PPMI_HTTP_*`` number must be finite and not negative (:func:`env_number`); ``nan``, ``inf``
  or ``-1`` is one :class:`~ppmi_build.errors.ConfigError` naming the variable.
* **User agent** ``ppmi-build/<version>`` on every request (RFC 9110 §10.1.5).
* **Redaction**: URLs are shown without ``user:password@`` userinfo and without the query string, which may carry
  a credential (``?code=``, a SAS ``sig=``) (:func:`redact_url`); response bodies and exception texts pass through
  :func:`ppmi_build.errors.redact` with the token in use.

``httpx`` is imported only when a client is built, so importing this module costs nothing at start-up.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import BadInput, ConfigError

if TYPE_CHECKING:
    import httpx

#: read/write timeout per request in seconds when ``PPMI_HTTP_TIMEOUT`` is not set
DEFAULT_TIMEOUT_S = 120.0
#: connect timeout in seconds
CONNECT_TIMEOUT_S = 10.0


def user_agent() -> str:
    """``ppmi-build/<version>`` (RFC 9110 §10.1.5 product token)."""
    from .. import __version__

    return f"ppmi-build/{__version__}"


def is_loopback(host: str) -> bool:
    """True for ``localhost``, ``*.localhost`` (RFC 6761 §6.3) and loopback IP literals (127.0.0.0/8, ``::1``)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, what: str = "environment url") -> str:
    """Validate a URL that will receive a bearer token: https, or http only for a loopback host.

    Args:
        url: absolute URL (``https://contoso.crm.dynamics.com``).
        what: how the message names the setting (``environment url``, ``graph_url``, ...).
    Returns:
        ``url`` stripped of white space and trailing slashes.
    Raises:
        ConfigError: relative URL, another scheme, or http to a non-loopback host.
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError as e:  # "Invalid IPv6 URL" for http://[::1
        raise ConfigError(f"{what} {url!r} is not a valid URL ({e}); write it as https://host") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"{what} {redact_url(url)!r} is not an absolute https URL; use "
                          "https://ORG.crm.dynamics.com")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(f"{what} {redact_url(url)!r} uses http:// to a non-loopback host; use https:// (plain "
                          "http is only allowed for a local emulator on 127.0.0.1 / localhost)")
    return url.strip().rstrip("/")


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` userinfo replaced by ``***@`` and a query string (it may carry
    a token, e.g. ``?code=...``) by ``***`` (for messages)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if "@" not in parts.netloc and not parts.query:
        return url
    if "@" in parts.netloc:
        parts = parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1])
    if parts.query:
        parts = parts._replace(query="***")
    return urlunsplit(parts)


def check_urls(urls: Sequence[str]) -> None:
    """Refuse timestamp URLs that are not absolute http(s) URLs, before anything is signed.

    Raises:
        BadInput: names the URL (userinfo redacted) and the fix.
    """
    for url in urls:
        try:
            parts = urlsplit(str(url))
            ok = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok:
            raise BadInput(f"timestamp URL {redact_url(str(url))!r} is not an http(s) URL; pass e.g. "
                           "--timestamp-url http://timestamp.digicert.com")


def env_number(env: Mapping[str, str], name: str, default: float, *, integer: bool = False) -> float:
    """The value of variable ``name`` as a finite, non-negative number, or ``default`` when unset or empty.

    Raises:
        ConfigError: not a number, ``nan``/``inf``, or negative (the message names the variable and the value).
    """
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(int(raw)) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"{name}={raw!r} is not {kind}") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name}={raw!r} must be a finite number of at least 0")
    return value


def timeout_from_env(environ: Mapping[str, str] | None = None) -> float:
    """Read/write timeout in seconds from ``PPMI_HTTP_TIMEOUT`` (default :data:`DEFAULT_TIMEOUT_S`; 0 is refused).

    Raises:
        ConfigError: not a finite positive number.
    """
    env = os.environ if environ is None else environ
    value = env_number(env, "PPMI_HTTP_TIMEOUT", DEFAULT_TIMEOUT_S)
    if value == 0:
        raise ConfigError("PPMI_HTTP_TIMEOUT=0 would time out every request; use a number of seconds above 0")
    return value


def new_client(*, timeout: float = DEFAULT_TIMEOUT_S, connect_timeout: float = CONNECT_TIMEOUT_S,
               headers: Mapping[str, str] | None = None, transport: httpx.BaseTransport | None = None,
               follow_redirects: bool = False, **kwargs: Any) -> httpx.Client:
    """An :class:`httpx.Client` with ppmi-build's timeouts and user agent.

    Args:
        timeout: read/write/pool timeout in seconds.
        connect_timeout: connect timeout in seconds.
        headers: default headers added to every request (the user agent is always set).
        transport: an httpx transport (tests: :class:`httpx.MockTransport`).
        follow_redirects: False for token-bearing APIs (a redirect must not carry the token elsewhere).
        kwargs: passed to :class:`httpx.Client` (e.g. ``base_url``).
    """
    import httpx

    hdrs = {"User-Agent": user_agent(), **dict(headers or {})}
    return httpx.Client(timeout=httpx.Timeout(timeout, connect=connect_timeout), headers=hdrs, transport=transport,
                        follow_redirects=follow_redirects, **kwargs)
