"""Signing back-ends: the built-in Python signer (default) and external tools run as subprocesses.

``BACKENDS`` maps a ``--backend`` name to a :class:`Backend`. ``auto`` resolves to ``python`` for
both assemblies and packages (the built-in Authenticode signer, and ``ppmi_build.signing.nuget``
for packages). External tools are found with :func:`shutil.which`; a missing tool raises
:class:`~ppmi_build.errors.ToolNotFound` (exit 3) with an install hint.

Secrets never go into process arguments (DESIGN.md §3): osslsigncode reads the key passphrase
with ``-readpass FILE`` from a 0600 file in a private 0700 temp folder, deleted afterwards, and
signtool gets a temporary PFX protected by file permissions instead of ``/p PASSWORD``.

The NuGet engineer's back-ends (``nuget``, ``dotnet``) register themselves by replacing the
placeholder entries: ``BACKENDS["nuget"] = Backend(...)`` in ``ppmi_build.signing.nuget``, which
:func:`resolve_backend` imports before looking those names up.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BadInput, ToolFailed, ToolNotFound, redact
from .keys import KeySource


@dataclass
class SignOptions:
    """Options every back-end receives (see :func:`ppmi_build.signing.api.sign_file`)."""

    timestamp_urls: Sequence[str] = ()
    digest: str = "sha256"
    program_name: str | None = None
    program_url: str | None = None
    overwrite: bool = False
    sign_contents: bool = False


@dataclass
class Backend:
    """A signing back-end.

    Attributes:
        name: the ``--backend`` value.
        kinds: artifact kinds it signs (``"assembly"``, ``"package"``).
        sign: ``sign(src, dst, key, options) -> {"replaced_signature": bool, "timestamped": bool}``;
            writes the signed file to ``dst`` (a temp path beside the target).
        find: returns the executable path, or None when not installed (None for built-ins).
        install_hint: how to get the tool.
    """

    name: str
    kinds: frozenset[str]
    sign: Callable[[Path, Path, KeySource, SignOptions], dict]
    find: Callable[[], str | None] | None = None
    install_hint: str = ""
    notes: list[str] = field(default_factory=list)


# --- python (built-in) ----------------------------------------------------------------------


def _python_sign(src: Path, dst: Path, key: KeySource, opts: SignOptions) -> dict:
    from .api import _kind  # local: api imports this module

    if _kind(src) == "package":
        from . import nuget  # written by the NuGet engineer

        return dict(nuget.sign_package(
            src, dst, key, timestamp_urls=list(opts.timestamp_urls), digest=opts.digest,
            overwrite=opts.overwrite, sign_contents=opts.sign_contents,
            program_name=opts.program_name, program_url=opts.program_url,
        ))
    from .authenticode import sign_pe

    out = sign_pe(src, dst, key, digest=opts.digest, program_name=opts.program_name,
                  program_url=opts.program_url, timestamp_urls=opts.timestamp_urls)
    return {"replaced_signature": out.replaced_signature, "timestamped": out.timestamped}


# --- helpers for external tools -------------------------------------------------------------


class _PrivateDir:
    """A 0700 temp folder for key material handed to a tool; removed (files overwritten) on exit."""

    def __enter__(self) -> _PrivateDir:
        import tempfile

        self.path = Path(tempfile.mkdtemp(prefix="ppmi-key-"))
        os.chmod(self.path, 0o700)
        return self

    def write(self, name: str, data: bytes) -> Path:
        p = self.path / name
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return p

    def __exit__(self, *exc) -> None:
        for p in self.path.iterdir():
            try:
                size = p.stat().st_size
                with open(p, "r+b") as f:
                    f.write(b"\0" * size)
            except OSError:
                pass
        shutil.rmtree(self.path, ignore_errors=True)


def _run(cmd: list[str], *, tool: str, secrets_: Sequence[str] = (), timeout: float = 600) -> str:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise ToolNotFound(f"{tool} is not installed or not on PATH") from None
    except subprocess.TimeoutExpired:
        raise ToolFailed(f"{tool} did not finish within {timeout:.0f} s") from None
    out = redact((res.stdout or "") + (res.stderr or ""), *secrets_)
    if res.returncode != 0:
        last = " ".join(out.strip().splitlines()[-3:])[:400] or "no output"
        raise ToolFailed(f"{tool} failed with exit code {res.returncode}: {last}")
    return out


def _key_material(key: KeySource):
    from .keys import LocalKey

    if not isinstance(key, LocalKey):
        raise BadInput(
            f"external signing tools need a key file; the key source {key.description} can only be used "
            "with --backend python"
        )
    return key


# --- osslsigncode ---------------------------------------------------------------------------


def find_osslsigncode() -> str | None:
    return shutil.which("osslsigncode")


def _osslsigncode_sign(src: Path, dst: Path, key: KeySource, opts: SignOptions) -> dict:
    from cryptography.hazmat.primitives import serialization

    from . import pe
    from .api import _kind

    if _kind(src) != "assembly":
        raise BadInput(f"--backend osslsigncode signs PE files (.dll/.exe) only, not {src.name}; "
                       "use --backend python for packages")
    exe = find_osslsigncode()
    if exe is None:
        raise ToolNotFound(
            "osslsigncode is not installed; install it (apt-get install osslsigncode, brew install osslsigncode) "
            "or use --backend python"
        )
    local = _key_material(key)
    buf = pe.read_file(src)
    replaced = pe.parse(buf, src.name).signed  # also validates the input like the python backend
    del buf
    import secrets

    passphrase = secrets.token_urlsafe(24)
    with _PrivateDir() as holder:
        key_pem = local.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase.encode()),
        )
        key_file = holder.write("key.pem", key_pem)
        certs_file = holder.write("certs.pem", b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in local.certificate_chain()))
        pass_file = holder.write("pass.txt", passphrase.encode())
        cmd = [exe, "sign", "-certs", str(certs_file), "-key", str(key_file), "-readpass", str(pass_file),
               "-h", opts.digest]
        if opts.program_name:
            cmd += ["-n", opts.program_name]
        if opts.program_url:
            cmd += ["-i", opts.program_url]
        for url in opts.timestamp_urls:
            cmd += ["-ts", url]
        cmd += ["-in", str(src), "-out", str(dst)]
        if dst.exists():
            dst.unlink()  # osslsigncode refuses to overwrite on some versions
        _run(cmd, tool="osslsigncode", secrets_=[passphrase])
    return {"replaced_signature": replaced, "timestamped": bool(opts.timestamp_urls)}


# --- signtool (Windows SDK) -----------------------------------------------------------------


def find_signtool() -> str | None:
    if sys.platform != "win32":
        return None
    return shutil.which("signtool") or shutil.which("signtool.exe")


def _signtool_sign(src: Path, dst: Path, key: KeySource, opts: SignOptions) -> dict:  # pragma: no cover - Windows
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    from . import pe
    from .api import _kind

    if _kind(src) != "assembly":
        raise BadInput(f"--backend signtool signs PE files (.dll/.exe) only, not {src.name}; use --backend python")
    exe = find_signtool()
    if exe is None:
        raise ToolNotFound(
            "signtool is not available: it ships with the Windows SDK and runs on Windows only; "
            "use --backend python (the default) or --backend osslsigncode"
        )
    local = _key_material(key)
    replaced = pe.parse(pe.read_file(src), src.name).signed
    shutil.copyfile(src, dst)
    with _PrivateDir() as holder:
        chain = local.certificate_chain()
        # a PFX without a password, protected by the private folder's ACL, so no /p PASSWORD in argv
        pfx = holder.write("key.pfx", pkcs12.serialize_key_and_certificates(
            b"ppmi-build", local.private_key, chain[0], chain[1:] or None, serialization.NoEncryption()))
        cmd = [exe, "sign", "/fd", opts.digest.upper(), "/f", str(pfx)]
        if opts.program_name:
            cmd += ["/d", opts.program_name]
        if opts.program_url:
            cmd += ["/du", opts.program_url]
        if opts.timestamp_urls:
            cmd += ["/tr", opts.timestamp_urls[0], "/td", opts.digest.upper()]
        cmd.append(str(dst))
        _run(cmd, tool="signtool")
    return {"replaced_signature": replaced, "timestamped": bool(opts.timestamp_urls)}


# --- placeholders for the NuGet engineer ----------------------------------------------------


def _not_yet(name: str) -> Callable[[Path, Path, KeySource, SignOptions], dict]:
    def sign(src: Path, dst: Path, key: KeySource, opts: SignOptions) -> dict:
        raise ToolNotFound(
            f"--backend {name} is not available in this build; use --backend python (the default)"
        )

    return sign


BACKENDS: dict[str, Backend] = {
    "python": Backend("python", frozenset({"assembly", "package"}), _python_sign),
    "osslsigncode": Backend("osslsigncode", frozenset({"assembly"}), _osslsigncode_sign, find_osslsigncode,
                            "apt-get install osslsigncode / brew install osslsigncode"),
    "signtool": Backend("signtool", frozenset({"assembly"}), _signtool_sign, find_signtool,
                        "Windows SDK (signtool.exe), Windows only"),
    "nuget": Backend("nuget", frozenset({"package"}), _not_yet("nuget")),
    "dotnet": Backend("dotnet", frozenset({"package"}), _not_yet("dotnet")),
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
    if name in ("nuget", "dotnet"):
        try:  # lets ppmi_build.signing.nuget register its real back-ends
            from . import nuget  # noqa: F401
        except ImportError:
            pass
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
