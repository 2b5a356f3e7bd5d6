"""Make signify importable on OpenSSL 3.0.1x (signing-spec §3.3).

signify depends on oscrypto, whose 1.3.0 release (the latest on PyPI) detects the libcrypto
version with the regex ``\\b(\\d\\.\\d\\.\\d[a-z]*)\\b``, which does not match ``OpenSSL 3.0.19``
(two-digit patch level) and raises ``LibraryNotFoundError: Error detecting the version of
libcrypto`` on import. Upstream issue: https://github.com/wbond/oscrypto/issues/78 (also #75;
signify's maintainer points there: https://github.com/ralphje/signify/issues/41). The fix is in
oscrypto's git only, and our machines reach PyPI only, so this shim loads the ctypes binding with
the corrected pattern ``\\b(\\d+\\.\\d+\\.\\d+[a-z]*)\\b`` before signify (or certvalidator) imports it.

Import this module (``from ppmi_build.signing import _oscrypto_fix``) before importing signify.
It is imported lazily by :mod:`ppmi_build.signing.verify` only, never at CLI start-up. Remove it
once an oscrypto release with the fix is on PyPI.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    import importlib.abc

_NAME = "oscrypto._openssl._libcrypto_ctypes"
_OLD = "'\\\\b(\\\\d\\\\.\\\\d\\\\.\\\\d[a-z]*)\\\\b'"
_NEW = "'\\\\b(\\\\d+\\\\.\\\\d+\\\\.\\\\d+[a-z]*)\\\\b'"


def apply() -> None:
    """Idempotent: patch and register oscrypto's libcrypto ctypes module (no-op when already loaded)."""
    import oscrypto

    if _NAME in sys.modules:
        return
    try:
        oscrypto.use_ctypes()  # one backend to patch, whether or not cffi is installed
    except Exception:  # already configured (backend chosen): keep going
        pass
    importlib.import_module("oscrypto._openssl")
    spec = importlib.util.find_spec(_NAME)
    if spec is None or spec.loader is None:  # pragma: no cover - oscrypto layout changed
        return
    src = cast("importlib.abc.InspectLoader", spec.loader).get_source(_NAME)  # a SourceFileLoader
    if src is None:  # pragma: no cover
        return
    src = src.replace(_OLD, _NEW)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[_NAME] = mod
    try:
        exec(compile(src, cast(str, spec.origin), "exec"), mod.__dict__)
    except Exception:
        del sys.modules[_NAME]
        raise


apply()
