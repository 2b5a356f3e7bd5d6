"""Checks of RFC 3161 timestamp-server URLs before anything is signed (signing-spec §4), and their
redaction in messages (a URL may carry credentials or a token)."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import BadInput


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` userinfo replaced by ``***@`` and a query string (it may carry
    a token, e.g. ``?code=...``) by ``***`` (for messages)."""
    from urllib.parse import urlsplit, urlunsplit

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
    from urllib.parse import urlsplit

    for url in urls:
        try:
            parts = urlsplit(str(url))
            ok = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok:
            raise BadInput(f"timestamp URL {redact_url(str(url))!r} is not an http(s) URL; pass e.g. "
                           "--timestamp-url http://timestamp.digicert.com")
