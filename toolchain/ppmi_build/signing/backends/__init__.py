"""Signing back-ends: the built-in signer and the external tools, all listed here up front.

``BACKENDS`` maps a ``--backend`` name to a :class:`Backend`; ``auto`` means ``python`` for both artifact
kinds (the built-in Authenticode signer, signing-spec §1, and the built-in NuGet author signer, §2). Each
external tool has its own module (:mod:`.osslsigncode`, :mod:`.signtool`, :mod:`.nuget`, :mod:`.dotnet`), run
through the shared subprocess runner :mod:`._runner`; a module is imported only when its back-end signs.
A missing tool raises :class:`~ppmi_build.errors.ToolNotFound` (exit 3) with an install hint.

Secrets never go into process arguments (signing-spec §2.8 for the NuGet tools): see :mod:`._runner`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import BadInput
from ..keys import KeySource


@dataclass
class SignOptions:
    """Options every back-end receives (see :class:`ppmi_build.SignOptions` for their meaning).

    ``tool_env`` is the environment external tools run with (None: this process's environment without the
    usual secret variables, :data:`._runner.SECRET_ENV`); the CLI passes one without the configured
    password variables too.
    """

    timestamp_urls: Sequence[str] = ()
    digest: str = "sha256"
    program_name: str | None = None
    program_url: str | None = None
    overwrite: bool = False
    sign_contents: bool = False
    tool_env: Mapping[str, str] | None = None


@dataclass
class Backend:
    """A signing back-end.

    Attributes:
        name: the ``--backend`` value.
        kinds: artifact kinds it signs (``"assembly"``, ``"package"``).
        module: the module (under :mod:`ppmi_build.signing.backends`) whose ``sign(src, dst, key, options)
            -> {"replaced_signature": bool, "timestamped": bool}`` writes the signed file to ``dst``.
        install_hint: how to get the tool.
    """

    name: str
    kinds: frozenset[str]
    module: str
    install_hint: str = ""
    notes: list[str] = field(default_factory=list)

    def sign(self, src: Path, dst: Path, key: KeySource, opts: SignOptions) -> dict:
        """Run this back-end (imports its module now). Raises what the module raises."""
        sign: Callable[[Path, Path, KeySource, SignOptions], dict] = importlib.import_module(
            f"{__name__}.{self.module}").sign
        return sign(src, dst, key, opts)


BACKENDS: dict[str, Backend] = {
    "python": Backend("python", frozenset({"assembly", "package"}), "python"),
    "osslsigncode": Backend("osslsigncode", frozenset({"assembly"}), "osslsigncode",
                            "apt-get install osslsigncode / brew install osslsigncode"),
    "signtool": Backend("signtool", frozenset({"assembly"}), "signtool", "Windows SDK (signtool.exe), Windows only"),
    "nuget": Backend("nuget", frozenset({"package"}), "nuget",
                     "https://www.nuget.org/downloads (on Linux it runs under Mono)"),
    "dotnet": Backend("dotnet", frozenset({"package"}), "dotnet", ".NET SDK 7 or later (dotnet nuget sign)"),
}

#: what ``auto`` means for each artifact kind
AUTO: dict[str, str] = {"assembly": "python", "package": "python"}


def resolve_backend(name: str, kind: str) -> Backend:
    """The back-end for ``--backend name`` and an artifact ``kind``.

    Raises:
        BadInput: unknown name, or a back-end that cannot sign this kind (e.g. osslsigncode + .nupkg).
        ToolNotFound: (raised later by ``sign``) when the external tool is missing.
    """
    name = (name or "auto").lower()
    if name == "auto":
        name = AUTO[kind]
    backend = BACKENDS.get(name)
    if backend is None:
        raise BadInput(f"unknown --backend {name!r}; use one of auto, {', '.join(BACKENDS)}")
    if kind not in backend.kinds:
        what = "assemblies (.dll/.exe)" if kind == "assembly" else "packages (.nupkg)"
        able = ", ".join(n for n, b in BACKENDS.items() if kind in b.kinds)
        raise BadInput(f"--backend {name} cannot sign {what}; use one of: auto, {able}")
    return backend


def stop_tools() -> None:
    """Kill every external tool this process is running (a batch was stopped); see :func:`._runner.stop_tools`."""
    import sys

    runner = sys.modules.get(f"{__name__}._runner")
    if runner is not None:  # no tool ever ran otherwise
        runner.stop_tools()
