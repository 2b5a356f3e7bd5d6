"""Text that is almost right: characters pasted from documents, chats and certificate dialogs.

One checker, used by ``ppmi.toml`` (:mod:`ppmi_build.config`), by GUID parsing (:mod:`ppmi_build.identity.guids`)
and by the command line's GUID, URL and DN options (``cli/_common.py``), so every place names the same problem the
same way:

* typographic quotes (U+2018/2019/201A/201B/201C/201D/201E/201F, U+00AB/00BB, primes U+2032/2033): word
  processors and web pages replace ``"`` and ``'`` by them -> "contains typographic quotes; use straight quotes";
* non-breaking and other fixed-width spaces (U+00A0, U+2007, U+202F, U+2000-200A): look like a space, are not
  white space to .NET ``Guid.Parse`` or a URL parser -> "contains a non-breaking space";
* zero-width and direction marks (U+200B-200F, U+2060, U+FEFF, U+202A-202E, U+2066-2069): invisible; the Windows
  certificate dialog puts U+200E (LEFT-TO-RIGHT MARK) before a copied thumbprint -> "contains an invisible
  character";
* typographic dashes (U+2010-2015, U+2212) where a GUID needs ``-`` -> "contains a typographic dash; use '-'".

URLs are also parsed (RFC 3986 via :func:`urllib.parse.urlsplit`: ``http://[::1`` is refused with the reason) and
checked for ``enviornment``, a typo found in copies of the Power Platform issuer/environment host name
(``{id}.environment.api.powerplatform.com``, domain-spec §1.0).

This module depends on nothing but :mod:`ppmi_build.errors`.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from .errors import BadInput

#: category -> (characters, the phrase after "contains", the fix)
_CLASSES: tuple[tuple[str, frozenset[str], str, str], ...] = (
    ("quote", frozenset("\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u201f\u00ab\u00bb\u2032\u2033\u2039\u203a"),
     "typographic quotes", "use straight quotes (\" or ')"),
    ("space", frozenset("\u00a0\u2007\u202f\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2008\u2009\u200a\u3000"),
     "a non-breaking space", "retype the space, or remove it"),
    ("invisible", frozenset("\u200b\u200c\u200d\u200e\u200f\u2060\ufeff\u202a\u202b\u202c\u202d\u202e"
                            "\u2066\u2067\u2068\u2069\u00ad"),
     "an invisible character", "remove it (retype the value or delete the character)"),
    ("dash", frozenset("\u2010\u2011\u2012\u2013\u2014\u2015\u2212"), "a typographic dash", "use '-'"),
)

#: the documentation typo of ``environment`` seen in Power Platform host names (module docstring)
URL_TYPOS = {"enviornment": "environment"}


@dataclass(frozen=True)
class Lookalike:
    """One suspicious character.

    Attributes:
        kind: ``quote``, ``space``, ``invisible`` or ``dash``.
        char: the character.
        index: its 0-based position in the text.
        phrase: what the message says the text contains (``"typographic quotes"``).
        fix: what to do.
    """

    kind: str
    char: str
    index: int
    phrase: str
    fix: str

    @property
    def code(self) -> str:
        """``U+201C LEFT DOUBLE QUOTATION MARK``."""
        return f"U+{ord(self.char):04X} {unicodedata.name(self.char, '')}".rstrip()


def find_lookalikes(text: str) -> list[Lookalike]:
    """Every suspicious character of ``text``, in order (empty when the text is clean)."""
    found = []
    for i, ch in enumerate(text):
        if ord(ch) < 0xA0:
            continue
        for kind, chars, phrase, fix in _CLASSES:
            if ch in chars:
                found.append(Lookalike(kind, ch, i, phrase, fix))
                break
    return found


def _shown(text: str) -> str:
    shown = text if len(text) <= 80 else text[:77] + "..."
    return ascii(shown)  # the invisible characters become visible escapes (\u200e)


def lookalike_problem(text: str, what: str) -> str | None:
    """One-line description of the suspicious characters in ``text`` (``what`` names the value: ``"tenant ID"``,
    ``"[identity] tenant_id"``), or None when there are none. Example:
    ``tenant ID '\\u201c7f2c...\\u201d' contains typographic quotes (U+201C LEFT DOUBLE QUOTATION MARK at character
    1); use straight quotes (" or ')``."""
    found = find_lookalikes(text)
    if not found:
        return None
    kinds: dict[str, Lookalike] = {}
    for f in found:
        kinds.setdefault(f.kind, f)
    parts = [f"{f.phrase} ({f.code} at character {f.index + 1})" for f in kinds.values()]
    fixes = "; ".join(dict.fromkeys(f.fix for f in kinds.values()))
    return f"{what} {_shown(text)} contains {' and '.join(parts)}; {fixes}"


def check_text(text: str, what: str) -> str:
    """``text`` unchanged when it holds no suspicious character. Raises BadInput (exit 2) naming them."""
    problem = lookalike_problem(text, what)
    if problem:
        raise BadInput(problem)
    return text


def strip_invisible(text: str) -> tuple[str, list[Lookalike]]:
    """``text`` without its invisible characters and non-breaking spaces (what a copy from a dialog adds), and
    the characters removed. Quotes and dashes are kept: they change meaning, they are reported, not dropped."""
    found = [f for f in find_lookalikes(text) if f.kind in ("invisible", "space")]
    drop = {f.index for f in found}
    return "".join(ch for i, ch in enumerate(text) if i not in drop), found


def url_problem(url: str, what: str) -> str | None:
    """One-line description of what is wrong with ``url`` (suspicious characters, not parseable, no scheme or
    host, a known typo), or None. Only ``http``/``https`` URLs are expected."""
    problem = lookalike_problem(url, what)
    if problem:
        return problem
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number 0-65535
    except ValueError as e:
        return f"{what} {_shown(url)} is not a valid URL ({e}); write it as https://host/..."
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return f"{what} {_shown(url)} is not an http(s) URL with a host name; write it as https://host/..."
    lower = url.lower()
    for typo, right in URL_TYPOS.items():
        if typo in lower:
            at = lower.index(typo)
            fixed = url[:at] + right + url[at + len(typo):]
            return (f"{what} {_shown(url)} contains the typo {typo!r} (a known documentation typo); use {right!r}: "
                    f"{fixed}")
    return None


def check_url(url: str, what: str) -> str:
    """``url`` unchanged when :func:`url_problem` finds nothing. Raises BadInput (exit 2)."""
    problem = url_problem(url, what)
    if problem:
        raise BadInput(problem)
    return url


def did_you_mean(word: str, known: list[str] | tuple[str, ...] | set[str] | frozenset[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``known`` (difflib ratio >= 0.6, also when only the case or a
    plural differs), else ``""``."""
    import difflib

    lower = {k.lower(): k for k in known}
    w = word.lower()
    if w in lower:
        return f"; did you mean {lower[w]!r}?"
    for cand in (w.rstrip("s"), w + "s"):
        if cand in lower:
            return f"; did you mean {lower[cand]!r}?"
    close = difflib.get_close_matches(w, list(lower), n=1, cutoff=0.6)
    return f"; did you mean {lower[close[0]]!r}?" if close else ""
