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
import threading
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


def _run(cmd: list[str], *, tool: str, secrets_: Sequence[str] = (), timeout: float = 600,
         pass_fds: Sequence[int] = ()) -> str:
    """Run an external tool with an environment without secrets (``config.scrubbed_environ``: the
    PPMI_* secrets, the ``[signing] password_env`` and ``--password-env`` variables). Raises
    ToolNotFound / ToolFailed (output redacted)."""
    from ..config import scrubbed_environ

    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL, pass_fds=tuple(pass_fds),
                                env=scrubbed_environ(settings=_settings_or_none(), extra=_extra_secret_env))
    except FileNotFoundError:
        raise ToolNotFound(f"{tool} is not installed or not on PATH") from None
    with _RUNNING_LOCK:
        _RUNNING.add(proc)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise ToolFailed(f"{tool} did not finish within {timeout:.0f} s") from None
    except BaseException:  # SIGTERM / Ctrl-C in this thread: the tool goes too
        proc.kill()
        proc.wait()
        raise
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(proc)
            stopped = proc in _KILLED
            _KILLED.discard(proc)
    out = redact((stdout or "") + (stderr or ""), *secrets_)
    if proc.returncode != 0:
        if stopped:
            raise ToolFailed(f"{tool} was stopped")
        last = " ".join(out.strip().splitlines()[-3:])[:400] or "no output"
        raise ToolFailed(f"{tool} failed with exit code {proc.returncode}: {last}")
    return out


def _argv_safe_urls(urls: Sequence[str], tool: str) -> list[str]:
    """The timestamp URLs, refused when one carries credentials (``user:password@`` or a query string):
    an external tool takes them on its command line, which other local users can read (``ps``).

    Raises:
        BadInput: names the tool and the fix (the built-in signer keeps the URL in this process).
    """
    from urllib.parse import urlsplit

    for url in urls:
        parts = urlsplit(str(url))
        if "@" in parts.netloc or parts.query:
            raise BadInput(f"the timestamp URL carries credentials or a query string, which {tool} would show on "
                           "its command line; use the built-in signer (--backend python) for this server")
    return [str(u) for u in urls]


#: external tools running now (any thread), for :func:`stop_tools`
_RUNNING: set[subprocess.Popen] = set()
_RUNNING_LOCK = threading.Lock()
_KILLED: set[subprocess.Popen] = set()


def stop_tools() -> None:
    """Kill every external tool this process is running (a batch was stopped by SIGTERM or Ctrl-C:
    :func:`ppmi_build.signing.api.sign_files`); their files are then left unsigned and cleaned up."""
    with _RUNNING_LOCK:
        running = list(_RUNNING)
        _KILLED.update(running)
    for proc in running:
        try:
            proc.kill()
        except OSError:  # pragma: no cover - already gone
            pass


#: more variables to keep from child processes (the CLI's ``--password-env VAR``): :func:`hide_env`
_extra_secret_env: tuple[str, ...] = ()


def hide_env(*names: str | None) -> None:
    """Also withhold these environment variables (e.g. ``--password-env VAR``) from external tools."""
    global _extra_secret_env
    _extra_secret_env = tuple(dict.fromkeys(_extra_secret_env + tuple(n for n in names if n)))


def _settings_or_none():
    try:
        from ..config import load_settings

        return load_settings()
    except Exception:  # a broken ppmi.toml was already reported by the command; the fixed list still applies
        return None


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
    with _PrivateDir() as holder:
        # The ORIGINAL key file is handed over (still encrypted when it was): a PFX with -pkcs12, a PEM key
        # with -key. No decrypted or re-encrypted copy is written, and the passphrase goes through a pipe
        # (POSIX) or a 0600 file in the 0700 folder (removed in __exit__, also on SIGTERM: cli.run).
        password = local.key_password
        if local.key_format == "pkcs12" and (local.key_file is not None or local.pfx_data is not None):
            pfx = local.key_file if local.key_file is not None else holder.write("signing.pfx", local.pfx_data)
            cmd = [exe, "sign", "-pkcs12", str(pfx)]
        elif local.key_format == "pem" and local.key_file is not None:
            certs_file = holder.write("certs.pem", b"".join(
                c.public_bytes(serialization.Encoding.PEM) for c in local.certificate_chain()))
            cmd = [exe, "sign", "-certs", str(certs_file), "-key", str(local.key_file)]
        else:  # a key made in memory: an encrypted PKCS#8 copy whose random passphrase never touches the disk
            import secrets

            password = secrets.token_urlsafe(24).encode()
            key_file = holder.write("key.pem", local.private_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(password)))
            certs_file = holder.write("certs.pem", b"".join(
                c.public_bytes(serialization.Encoding.PEM) for c in local.certificate_chain()))
            cmd = [exe, "sign", "-certs", str(certs_file), "-key", str(key_file)]
        with _PasswordChannel(holder, password) as (pass_arg, fds):
            if pass_arg is not None:
                cmd += ["-readpass", pass_arg]
            cmd += ["-h", opts.digest]
            if opts.program_name:
                cmd += ["-n", opts.program_name]
            if opts.program_url:
                cmd += ["-i", opts.program_url]
            for url in _argv_safe_urls(opts.timestamp_urls, "osslsigncode"):
                cmd += ["-ts", url]
            cmd += ["-in", str(src), "-out", str(dst)]
            if dst.exists():
                dst.unlink()  # osslsigncode refuses to overwrite on some versions
            secrets_ = [password.decode("utf-8", "replace")] if password else []
            _run(cmd, tool="osslsigncode", secrets_=secrets_, pass_fds=fds)
    return {"replaced_signature": replaced, "timestamped": bool(opts.timestamp_urls)}


class _PasswordChannel:
    """A passphrase for ``-readpass``: the read end of a pipe (``/dev/fd/N``, inherited by the child;
    nothing on disk) on POSIX, else a 0600 file in the private folder. Enter gives ``(argument or None
    when there is no password, descriptors the child must inherit)``."""

    def __init__(self, holder: _PrivateDir, password: bytes | None):
        self.holder, self.password, self.rfd = holder, password, -1

    def __enter__(self) -> tuple[str | None, tuple[int, ...]]:
        if self.password is None:
            return None, ()
        if os.name == "posix" and os.path.isdir("/dev/fd") and len(self.password) < 60000:
            r, w = os.pipe()
            try:
                os.write(w, self.password)
            finally:
                os.close(w)
            self.rfd = r
            return f"/dev/fd/{r}", (r,)
        return str(self.holder.write("pass.txt", self.password)), ()

    def __exit__(self, *exc) -> None:
        if self.rfd >= 0:
            os.close(self.rfd)


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
            cmd += ["/tr", _argv_safe_urls(opts.timestamp_urls[:1], "signtool")[0], "/td", opts.digest.upper()]
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
