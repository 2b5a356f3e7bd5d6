"""The subprocess runner shared by the external signing tools.

A tool runs with an environment without secrets (:data:`SECRET_ENV` plus what the caller lists), its output
is redacted, and it is killed when the batch that started it is stopped (:func:`stop_tools`). Key material
handed to a tool goes into a private 0700 folder (:class:`PrivateDir`) whose files are overwritten and
removed afterwards; passphrases go through a pipe (:class:`PasswordChannel`), never into argv
(signing-spec §2.8).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from ...errors import BadInput, ToolFailed, ToolNotFound, redact
from ..keys import KeySource

#: environment variables no external tool inherits, whatever the caller passes (secrets of ppmi-build and of
#: the CI systems it runs in)
SECRET_ENV = ("PPMI_PFX_PASSWORD", "PPMI_PFX_BASE64", "PPMI_ACCESS_TOKEN", "PPMI_GRAPH_TOKEN", "PPMI_ARM_TOKEN",
              "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PASSWORD", "AZURE_FEDERATED_TOKEN",
              "SYSTEM_ACCESSTOKEN", "ACTIONS_ID_TOKEN_REQUEST_TOKEN")


class PrivateDir:
    """A 0700 temp folder for key material handed to a tool; removed (files overwritten) on exit."""

    def __enter__(self) -> PrivateDir:
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


def run(cmd: list[str], *, tool: str, secrets_: Sequence[str] = (), timeout: float = 600,
        pass_fds: Sequence[int] = (), env: Mapping[str, str] | None = None) -> str:
    """Run an external tool with ``env`` (default: this process's environment) less :data:`SECRET_ENV`.

    Raises ToolNotFound / ToolFailed (output redacted)."""
    base = os.environ if env is None else env
    child_env = {k: v for k, v in base.items() if k not in SECRET_ENV}

    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL, pass_fds=tuple(pass_fds),
                                env=child_env)
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


def argv_safe_urls(urls: Sequence[str], tool: str) -> list[str]:
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


def key_material(key: KeySource):
    from ..keys import LocalKey

    if not isinstance(key, LocalKey):
        raise BadInput(
            f"external signing tools need a key file; the key source {key.description} can only be used "
            "with --backend python"
        )
    return key


class PasswordChannel:
    """A passphrase for ``-readpass``: the read end of a pipe (``/dev/fd/N``, inherited by the child;
    nothing on disk) on POSIX, else a 0600 file in the private folder. Enter gives ``(argument or None
    when there is no password, descriptors the child must inherit)``."""

    def __init__(self, holder: PrivateDir, password: bytes | None):
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


