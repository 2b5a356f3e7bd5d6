"""External package-signing back-ends: ``nuget sign`` (NuGet CLI) and ``dotnet nuget sign`` (.NET SDK).

Both tools take the PFX password only as a command-line value (``-CertificatePassword`` /
``--certificate-password``; signing-spec §2.8), which would expose it in the process list. So ppmi-build
never passes a password: it writes the signing key and chain as a PFX *without* a password (PKCS#12 with
no encryption) into a private 0700 temp folder (file mode 0600), passes that path, and overwrites and
deletes the folder as soon as the tool exits (:class:`._runner.PrivateDir`, the same approach as the signtool
back-end). The package is copied into the same folder and the tool writes its output there
(``-OutputDirectory`` / ``--output``); ppmi-build then copies it to the temporary target and verifies it
like its own output.

Limits of these tools, refused up front with a clear message: ``--sign-contents`` (they sign only the
package, NuGet/Home#12362), and a key that is not in a file (``--backend python`` handles those). Only the
first ``--timestamp-url`` is used (the tools take one timestamper).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from ...errors import BadInput, ToolFailed, ToolNotFound
from ..keys import KeySource
from . import SignOptions
from ._runner import PrivateDir, argv_safe_urls, key_material, run


def find_nuget() -> str | None:
    """Path of the NuGet CLI (``nuget`` or ``nuget.exe`` on PATH), or None."""
    return shutil.which("nuget") or shutil.which("nuget.exe")


def find_dotnet() -> str | None:
    """Path of the .NET SDK driver (``dotnet``), or None."""
    return shutil.which("dotnet")


NUGET_HINT = ("install the NuGet CLI (https://www.nuget.org/downloads; on Linux it runs under Mono) "
              "or use --backend python (the default, every OS)")
DOTNET_HINT = "install the .NET SDK 7 or later (dotnet nuget sign) or use --backend python (the default, every OS)"


def _command(tool: str, exe: str, package: Path, pfx: Path, outdir: Path, opts: SignOptions) -> list[str]:
    """argv for the tool; never a password (signing-spec §2.8 for the option names)."""
    digest = opts.digest.upper()
    if tool == "nuget":
        cmd = [exe, "sign", str(package), "-CertificatePath", str(pfx), "-HashAlgorithm", digest,
               "-OutputDirectory", str(outdir), "-NonInteractive"]
        if opts.timestamp_urls:
            cmd += ["-Timestamper", argv_safe_urls(opts.timestamp_urls[:1], "nuget")[0], "-TimestampHashAlgorithm",
                    digest]
        if opts.overwrite:
            cmd.append("-Overwrite")
        return cmd
    cmd = [exe, "nuget", "sign", str(package), "--certificate-path", str(pfx), "--hash-algorithm", digest,
           "--output", str(outdir)]
    if opts.timestamp_urls:
        cmd += ["--timestamper", argv_safe_urls(opts.timestamp_urls[:1], "dotnet nuget")[0],
                "--timestamp-hash-algorithm", digest]
    if opts.overwrite:
        cmd.append("--overwrite")
    return cmd


def _tool_sign(tool: str, find: Callable[[], str | None], hint: str):
    def sign(src: Path, dst: Path, key: KeySource, opts: SignOptions) -> dict:
        """Sign ``src`` into ``dst`` with the external tool. Returns the back-end outcome dict.

        Raises:
            BadInput: not a package, ``--sign-contents``, key not from a file, already signed without
                ``--overwrite`` (NU3001, checked before the tool runs).
            ToolNotFound: the tool is not installed (exit 3). ToolFailed: it ran and failed (exit 3).
        """
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.serialization import pkcs12

        from ..nuget.sign import is_signed

        label = "nuget sign" if tool == "nuget" else "dotnet nuget sign"
        if not str(src).lower().endswith(".nupkg"):
            raise BadInput(f"--backend {tool} signs NuGet packages (.nupkg) only, not {src.name}")
        if opts.sign_contents:
            raise BadInput(f"--sign-contents is not available with --backend {tool}: {label} signs only the "
                           "package; use --backend python to sign the assemblies inside too")
        exe = find()
        if exe is None:
            raise ToolNotFound(f"{tool} is not installed or not on PATH; {hint}")
        local = key_material(key)
        replaced = is_signed(src)
        if replaced and not opts.overwrite:
            raise BadInput(f"NU3001: {src} is already signed; pass --overwrite to replace the signature",
                           code="NU3001")
        with PrivateDir() as holder:
            chain = local.certificate_chain()
            pfx = holder.write("signing.pfx", pkcs12.serialize_key_and_certificates(
                b"ppmi-build", local.private_key, chain[0], chain[1:] or None, serialization.NoEncryption()))
            work = holder.path / "in"
            outdir = holder.path / "out"
            work.mkdir(mode=0o700)
            outdir.mkdir(mode=0o700)
            package = work / src.name
            shutil.copyfile(src, package)
            run(_command(tool, exe, package, pfx, outdir, opts), tool=label, env=opts.tool_env)
            produced = outdir / src.name
            if not produced.is_file():
                raise ToolFailed(f"{label} finished but wrote no {src.name} into its output folder")
            shutil.copyfile(produced, dst)
        return {"replaced_signature": replaced, "timestamped": bool(opts.timestamp_urls)}

    return sign


sign_with_nuget = _tool_sign("nuget", find_nuget, NUGET_HINT)
sign_with_dotnet = _tool_sign("dotnet", find_dotnet, DOTNET_HINT)

