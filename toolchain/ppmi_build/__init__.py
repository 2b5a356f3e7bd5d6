"""ppmi-build: build, sign, register and bind Power Platform (Dataverse) plug-ins that use
managed identity, from any OS.

The public library API (the ``ppmi-build`` command line is a thin layer over it):

* :class:`Signer` - signs assemblies (Authenticode, signing-spec §1) and plug-in packages (NuGet author
  signature, signing-spec §2) with one key: ``Signer(key)`` or ``Signer.from_key(path_or_uri, ...)``;
  ``.sign(path_or_paths, output=None, options=SignOptions(...))`` returns a :class:`SignResult` (one path) or
  a list of them (several, signed in parallel). Every write is a temp file, verified, then renamed.
* :class:`SignOptions` - timestamp URLs, digest, back-end, overwrite, ``sign_contents``, program name/URL.
* :class:`Verifier` - ``Verifier(trusted_roots).verify(path)`` returns a :class:`VerifyResult` whose
  ``problems`` are :class:`Problem` records (``code`` such as ``NU3018`` or ``AUTHENTICODE_DIGEST_MISMATCH``,
  and ``message``).
* :class:`CertificateInfo` - a certificate as .NET shows it (subject, issuer, thumbprint, validity, key).
* :class:`ArtifactKind` - ``ASSEMBLY`` or ``PACKAGE``.
* :func:`resolve_signing_key` - the one precedence that picks the key (``--key``/``--cert``, then
  ``PPMI_PFX_BASE64``, then ``[signing]`` in ppmi.toml).
* the errors: :class:`PpmiError` and its subclasses (each maps to exit code 1, 2 or 3).

Other entry points live in the sub-packages: :mod:`ppmi_build.identity` (.NET DN strings, FIC
issuer/subject/audience, certificates, strong-name keys), :mod:`ppmi_build.project` (scaffold and dotnet
build), :mod:`ppmi_build.dataverse` (Web API client, registration, managed identity), :mod:`ppmi_build.emulator`
and :mod:`ppmi_build.pipeline` (release, rotate, upgrade).

Example - make a development certificate, sign the demo plug-in assembly, verify it and compute the federated
identity credential (FIC) its managed identity needs (domain-spec §7)::

    >>> import shutil, tempfile
    >>> from pathlib import Path
    >>> import ppmi_build
    >>> from ppmi_build.identity.certificates import new_dev_certificate
    >>> from ppmi_build.identity.fic import compute_fic
    >>> from ppmi_build.signing.keys import LocalKey
    >>> key, cert = new_dev_certificate("CN=Contoso Dev, E=dev@contoso.example", days=30)
    >>> folder = Path(tempfile.mkdtemp())
    >>> dll = folder / "Contoso.Demo.Plugins.dll"
    >>> with ppmi_build.resources.data().joinpath(dll.name).open("rb") as src, open(dll, "wb") as dst:
    ...     shutil.copyfileobj(src, dst)
    >>> signer = ppmi_build.Signer(LocalKey(private_key=key, chain=[cert]))
    >>> signed = signer.sign(dll, options=ppmi_build.SignOptions(digest="sha256"))
    >>> signed.kind is ppmi_build.ArtifactKind.ASSEMBLY, signed.verified, signed.certificate.subject
    (True, True, 'CN=Contoso Dev, E=dev@contoso.example')
    >>> result = ppmi_build.Verifier(trusted_roots=[cert], use_system_roots=False).verify(dll)
    >>> result.valid, result.problems
    (True, [])
    >>> fic = compute_fic(cert, tenant_id="5f8a1a9f-2e1a-415f-b10c-84c3736a21b9",
    ...                   environment_id="7efcc31a-c410-e20e-9b95-dd448cedf653", version=2)
    >>> fic.audience
    'api://AzureADTokenExchange'
    >>> shutil.rmtree(folder)

A PFX instead of a generated key: ``ppmi_build.Signer.from_key("certs/contoso-dev.pfx",
password_env="PPMI_PFX_PASSWORD")``; a key URI: ``Signer.from_key("keyvault:https://...")``.

Importing :mod:`ppmi_build` loads nothing heavy: the names above are imported on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> module (relative to this package) that defines it
_EXPORTS: dict[str, str] = {
    "Signer": ".signing.api",
    "SignOptions": ".signing.api",
    "SignProgress": ".signing.api",
    "Verifier": ".signing.api",
    "SignResult": ".signing.results",
    "VerifyResult": ".signing.results",
    "Problem": ".signing.results",
    "CertificateInfo": ".signing.results",
    "ArtifactKind": ".signing.results",
    "resolve_signing_key": ".signing.keys",
    "PpmiError": ".errors",
    "BadInput": ".errors",
    "ConfigError": ".errors",
    "InputFileError": ".errors",
    "CertificateError": ".errors",
    "PasswordError": ".errors",
    "PEFormatError": ".errors",
    "PackageFormatError": ".errors",
    "CheckFailed": ".errors",
    "SignatureInvalid": ".errors",
    "BatchSignError": ".errors",
    "ExternalFailure": ".errors",
    "ToolNotFound": ".errors",
    "ToolFailed": ".errors",
    "TimestampError": ".errors",
    "ServiceError": ".errors",
}

#: sub-modules reachable as attributes without an explicit import (used by the example above)
_SUBMODULES = ("resources",)

__all__ = [  # noqa: RUF022 - grouped as documented above
    "__version__",
    "Signer", "SignOptions", "SignProgress", "Verifier", "SignResult", "VerifyResult", "Problem", "CertificateInfo",
    "ArtifactKind", "resolve_signing_key",
    "PpmiError", "BadInput", "ConfigError", "InputFileError", "CertificateError", "PasswordError", "PEFormatError",
    "PackageFormatError", "CheckFailed", "SignatureInvalid", "BatchSignError", "ExternalFailure", "ToolNotFound",
    "ToolFailed", "TimestampError", "ServiceError",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on first use
    from .errors import (
        BadInput,
        BatchSignError,
        CertificateError,
        CheckFailed,
        ConfigError,
        ExternalFailure,
        InputFileError,
        PackageFormatError,
        PasswordError,
        PEFormatError,
        PpmiError,
        ServiceError,
        SignatureInvalid,
        TimestampError,
        ToolFailed,
        ToolNotFound,
    )
    from .signing.api import Signer, SignOptions, SignProgress, Verifier
    from .signing.keys import resolve_signing_key
    from .signing.results import ArtifactKind, CertificateInfo, Problem, SignResult, VerifyResult


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562), so ``import ppmi_build`` stays light."""
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, *_SUBMODULES])
