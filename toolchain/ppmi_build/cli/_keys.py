"""The key options shared by the commands that sign or read the signing certificate (DESIGN.md §3).

``--key URI`` (``pkcs11:``, ``keyvault:``, ``trustedsigning:``; see :mod:`ppmi_build.signing.keys.uri`),
``--pin-env VAR`` (the variable holding a PKCS#11 PIN, never the PIN itself) and ``--cert-chain FILE``
(intermediates for a key URI). Which key a command uses is decided by
:func:`ppmi_build.signing.keys.resolve_signing_key`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

KEY_HELP = ("Signing key URI: pkcs11:token=T;object=K[?module-path=LIB], "
            "keyvault:https://VAULT.vault.azure.net/certificates/NAME, "
            "trustedsigning:https://REGION.codesigning.azure.net/ACCOUNT/PROFILE. Default: [signing] key.")


def key_uri_options(f: F, *, key: bool = True) -> F:
    """Add ``--pin-env VAR`` and ``--cert-chain FILE`` (and ``--key URI`` unless ``key`` is False)."""
    f = click.option("--cert-chain", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
                     help="PEM/DER intermediates to embed after the certificate of a --key URI.")(f)
    f = click.option("--pin-env", metavar="VAR",
                     help="Environment variable holding the PKCS#11 user PIN (default PPMI_PKCS11_PIN; "
                          "else a prompt on a terminal).")(f)
    if key:
        f = click.option("--key", "key_uri", metavar="URI", help=KEY_HELP)(f)
    return f



def key_uri_options_no_key(f: F) -> F:
    """``--pin-env`` and ``--cert-chain`` only (for ``sign``, whose ``--key`` also takes a PEM key file)."""
    return key_uri_options(f, key=False)
