"""Start signing assemblies before the signing stack is imported (issue #2, speed of ``ppmi-build sign``).

``ppmi-build sign`` spends most of a one-file run importing click and cryptography and loading the
key. :func:`prefetch` uses that time: for each assembly the built-in signer will sign it maps the
input, creates the temp file beside the target (:mod:`ppmi_build.signing.staging`) and starts the
:class:`ppmi_build.signing.pe.SigningPasses` (authentihash, checksum words, optional input SHA-256,
and the copy of the image into the temp file, flushed to disk) on helper threads. The signer takes
them with :func:`take`; after signing, only the patched header fields, the padding and the
certificate table are written and flushed.

Nothing here decides anything: :func:`ppmi_build.signing.api.sign_file` runs all its checks as
usual before it takes a prefetched entry, and an entry whose input changed (device, inode, size,
mtime), or that was made for another target, digest or output option, is discarded and the work
redone. :func:`discard` closes whatever was not taken and deletes its temp file; the CLI calls it in
a ``finally`` (and it is registered with :mod:`atexit`), so a failed or interrupted run leaves no
temp file behind.

Light on imports on purpose: this module, :mod:`~ppmi_build.signing.pe` and
:mod:`~ppmi_build.signing.staging` import neither cryptography nor asn1crypto.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from . import pe, staging


@dataclass
class Prefetched:
    """One assembly whose signing work has started.

    Attributes:
        passes: the running :class:`~ppmi_build.signing.pe.SigningPasses` (owns the mapping and the
            input descriptor), copying the image into ``fd``.
        fd: the temp file, open read-write, mode already set as :func:`staging._mode_for` gives.
        tmp: its path (beside ``target``).
        target: the file the signed output will replace.
    """

    passes: pe.SigningPasses
    fd: int
    tmp: Path
    target: Path
    identity: tuple
    hash_name: str
    input_sha256: bool

    def close(self) -> None:
        """Stop using it: wait for its jobs, close the descriptors, delete the temp file."""
        try:
            self.passes.close()
        finally:
            try:
                os.close(self.fd)
            except OSError:  # pragma: no cover - already closed
                pass
            staging._unlink(self.tmp)


_CACHE: dict[str, Prefetched] = {}
_LOCK = threading.Lock()
_ATEXIT = False


def _identity(path: str) -> tuple:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def prefetch(path: Path | str, target: Path | str, hash_name: str = "sha256", *, input_sha256: bool = False) -> bool:
    """Start signing ``path`` (an assembly) into a temp file beside ``target``; see the module text.

    Returns:
        True when started. Never raises: on any problem (not a regular file, not a PE image, target
        not writable...) nothing is started and the signer reports the problem the usual way.
    """
    global _ATEXIT
    path, target = Path(path), Path(target)
    try:
        import stat

        key = os.path.realpath(path)
        if not stat.S_ISREG(os.stat(key).st_mode):  # opening a FIFO would block
            return False
        ident = _identity(key)
        staging._check_target(target)
    except Exception:
        return False
    src_fd = fd = -1
    mapping = tmp = None
    try:
        src_fd, mapping = pe.open_image(key)
        fd, tmp = staging._new_temp(target)
        os.fchmod(fd, staging._mode_for(target, path))
        passes = pe.SigningPasses(mapping, path.name, hash_name, input_sha256=input_sha256, owns=mapping,
                                  src_fd=src_fd, copy_to=fd)
    except BaseException as e:
        for d in (fd, src_fd):
            if d >= 0:
                os.close(d)
        if mapping is not None:
            mapping.close()
        if tmp is not None:
            staging._unlink(tmp)
        if not isinstance(e, Exception):
            raise
        return False
    entry = Prefetched(passes, fd, tmp, target, ident, hash_name, input_sha256)
    with _LOCK:
        old = _CACHE.pop(key, None)
        _CACHE[key] = entry
        if not _ATEXIT:
            import atexit

            atexit.register(discard)
            _ATEXIT = True
    if old is not None:
        old.close()
    return True


def take(path: Path | str, target: Path | str, hash_name: str, *, input_sha256: bool = False) -> Prefetched | None:
    """The prefetched entry of ``path`` (removed from the cache; the caller now owns it and must
    :meth:`Prefetched.close` it or hand its parts on), or None when there is none or it does not
    match (other target, digest or option, or the input changed since: it is then discarded)."""
    key = os.path.realpath(path)
    with _LOCK:
        entry = _CACHE.pop(key, None)
    if entry is None:
        return None
    try:
        same = _identity(key) == entry.identity
    except OSError:
        same = False
    if (same and entry.hash_name == hash_name and entry.input_sha256 == input_sha256
            and os.path.abspath(entry.target) == os.path.abspath(target)):
        return entry
    entry.close()
    return None


def discard() -> None:
    """Close every entry nobody took and delete its temp file (e.g. the command failed first)."""
    while True:
        with _LOCK:
            if not _CACHE:
                return
            _, entry = _CACHE.popitem()
        entry.close()
