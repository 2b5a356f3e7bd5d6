"""One exception hierarchy for ppmi-build.

Every error carries a one-line, user-facing message that names the input and the fix, and
the process exit code the CLI maps it to (DESIGN.md §3):

* ``0`` success
* ``1`` a check failed (:class:`CheckFailed`: invalid signature, verification mismatch, plan refused)
* ``2`` bad usage or bad input (:class:`BadInput` and subclasses)
* ``3`` an external tool or service failed (:class:`ExternalFailure` and subclasses)

Messages must never contain secrets (PFX passwords, access tokens). Code that builds a
message from a server response or a subprocess output must pass it through
:func:`redact` first.
"""

from __future__ import annotations

import re
from typing import Any

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_EXTERNAL = 3


class PpmiError(Exception):
    """Base class. ``str(err)`` is the one-line user-facing message.

    Attributes:
        message: one line, names the input and the fix.
        exit_code: process exit code for the CLI (1, 2 or 3).
        code: optional machine-readable code (e.g. ``"NU3008"``, ``"0x80040216"``).
        partial: what a multi-step operation had done before it failed (a pipeline's
            :class:`~ppmi_build.pipeline.plan.Plan`), so the caller can still report it; None otherwise.
    """

    exit_code: int = EXIT_BAD_INPUT
    partial: Any = None

    def __init__(self, message: str, *, code: str | None = None, exit_code: int | None = None):
        message = " ".join(str(message).split())  # always one line
        super().__init__(message)
        self.message = message
        self.code = code
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message


# --- exit code 2: bad usage or bad input -------------------------------------------------


class BadInput(PpmiError):
    """The user gave something we cannot use (exit code 2)."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(BadInput):
    """ppmi.toml, PPMI_* variables or options are missing or inconsistent."""


class InputFileError(BadInput):
    """A named input file is missing, unreadable or not writable."""


class CertificateError(BadInput):
    """Certificate or key problem: wrong password, no private key, expired, wrong EKU, short key."""


class PasswordError(CertificateError):
    """A PFX/PEM password is wrong or missing."""


class KeyUriError(ConfigError):
    """A ``--key`` / ``[signing] key`` URI is malformed or names a key source this version cannot use."""


class TokenError(CertificateError):
    """A PKCS#11 token refused the request: wrong or locked PIN, token or key object not found (exit 2)."""


class PEFormatError(BadInput):
    """The file is not a PE image we can sign (not PE, truncated, trailing data after the table)."""


class PackageFormatError(BadInput):
    """The .nupkg is not a zip NuGet can sign (Zip64, too many entries, bad signature entry)."""


class GuidError(BadInput):
    """A tenant, environment, application or record ID is not a GUID."""


class ProjectError(BadInput):
    """Scaffolding or project file problem (invalid name, non-empty folder, csproj not XML)."""


class BatchSignError(PpmiError):
    """Some files of a batch ``sign`` were signed and some were not (``ppmi_build.Signer.sign`` with several
    files). The exit code is the worst of the failed files'.

    Attributes:
        outcomes: one dict per input, in input order: the ``SignResult.to_json()`` record plus
            ``"status": "signed"``, or ``{"path", "status": "failed" | "skipped", "error": {message, code,
            exit_code}}`` (DESIGN.md §3, ``sign --json`` of a partly failed batch).
        signed_files: the targets that were signed (replaced atomically), in input order.
    """

    def __init__(self, message: str, *, outcomes: list[dict], signed_files: list[str], exit_code: int):
        super().__init__(message, exit_code=exit_code)
        self.outcomes = outcomes
        self.signed_files = signed_files


# --- exit code 1: a check failed ---------------------------------------------------------


class CheckFailed(PpmiError):
    """A verification or consistency check failed (exit code 1)."""

    exit_code = EXIT_CHECK_FAILED


class SignatureInvalid(CheckFailed):
    """A signature we produced or read does not verify."""


class PlanRefused(CheckFailed):
    """A release/rotate plan cannot be carried out safely (e.g. FIC cap reached)."""


# --- exit code 3: an external tool or service failed -------------------------------------


class ExternalFailure(PpmiError):
    """An external tool or service failed (exit code 3)."""

    exit_code = EXIT_EXTERNAL


class ToolNotFound(ExternalFailure):
    """A required executable (dotnet, signtool, osslsigncode, nuget) is not installed."""


class ToolFailed(ExternalFailure):
    """An external executable ran and failed."""


class TokenDeviceError(ExternalFailure):
    """A PKCS#11 module cannot be loaded or the device failed while signing (exit 3)."""


class TimestampError(ExternalFailure):
    """Every RFC 3161 timestamp server failed or answered with an unusable token."""


class ServiceError(ExternalFailure):
    """An HTTP service (Dataverse, Graph, ARM) failed after retries."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 exit_code: int | None = None):
        super().__init__(message, code=code, exit_code=exit_code)
        self.status = status


class AuthError(ServiceError):
    """401/403 or no usable credentials."""


class SigningCertificateChanged(ServiceError):
    """A signing service answered each sign operation of one signature with another certificate than the one the
    signed attributes were built for (a key whose certificate changes between operations: Trusted Signing)."""


class TransportFailure(ServiceError):
    """An HTTP request failed in transport (connection refused or reset, timeout) after the retries the policy
    allows (:meth:`ppmi_build.http.RetryPolicy.run`). Clients catch it and raise their own service error.

    Attributes:
        reason: the httpx exception class name (``"ConnectError"``, ``"ReadTimeout"``).
        detail: the exception's text; may contain a URL with credentials, so pass it through :func:`redact`
            (and ``ppmi_build.http.redact_url``) before showing it.
        attempts: requests sent.
        ambiguous: an attempt may have reached the server (the connection failed after sending).
    """

    def __init__(self, *, reason: str, detail: str = "", attempts: int = 1, ambiguous: bool = False):
        n = f"{attempts} attempt" if attempts == 1 else f"{attempts} attempts"
        super().__init__(f"connection failed after {n}: {reason}", status=None)
        self.reason = reason
        self.detail = detail
        self.attempts = attempts
        self.ambiguous = ambiguous


class DataverseError(ServiceError):
    """A Dataverse Web API error after retries (exit code 3; domain-spec §4.4 error body).

    Attributes:
        status: HTTP status (None for connection failures).
        code: Dataverse error code (``0x80040216``) or None.
        hint: what it means and how to fix it, or "".
        server_message: the ``error.message`` text (redacted).
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None, hint: str = "",
                 server_message: str = ""):
        full = f"{message}; {hint}" if hint else message
        super().__init__(full, status=status, code=code)
        self.hint = hint
        self.server_message = server_message


class DataverseAuthError(DataverseError, AuthError):
    """401/403 from Dataverse (never retried)."""


_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")


def redact(text: str, *secrets: str | None) -> str:
    """Return ``text`` with every given secret and any ``Bearer <token>`` replaced by ``***``.

    Args:
        text: text that may contain secrets (HTTP bodies, tool output).
        secrets: exact secret values to remove (empty/None values are ignored).
    """
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return _BEARER.sub(r"\1***", text)
