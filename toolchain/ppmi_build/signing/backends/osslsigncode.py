"""osslsigncode as an Authenticode back-end (signing-spec §1; the key and passphrase never in argv)."""

from __future__ import annotations

import shutil
from pathlib import Path

from ...errors import BadInput, ToolNotFound
from ..keys import KeySource
from ..staging import kind_of
from . import SignOptions
from ._runner import PasswordChannel, PrivateDir, argv_safe_urls, key_material, run


def find_osslsigncode() -> str | None:
    return shutil.which("osslsigncode")


def sign(src: Path, dst: Path, key: KeySource, opts: SignOptions) -> dict:
    from cryptography.hazmat.primitives import serialization

    from ..authenticode import pe
    if kind_of(src) != "assembly":
        raise BadInput(f"--backend osslsigncode signs PE files (.dll/.exe) only, not {src.name}; "
                       "use --backend python for packages")
    exe = find_osslsigncode()
    if exe is None:
        raise ToolNotFound(
            "osslsigncode is not installed; install it (apt-get install osslsigncode, brew install osslsigncode) "
            "or use --backend python"
        )
    local = key_material(key)
    buf = pe.read_file(src)
    replaced = pe.parse(buf, src.name).signed  # also validates the input like the python backend
    del buf
    with PrivateDir() as holder:
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
        with PasswordChannel(holder, password) as (pass_arg, fds):
            if pass_arg is not None:
                cmd += ["-readpass", pass_arg]
            cmd += ["-h", opts.digest]
            if opts.program_name:
                cmd += ["-n", opts.program_name]
            if opts.program_url:
                cmd += ["-i", opts.program_url]
            for url in argv_safe_urls(opts.timestamp_urls, "osslsigncode"):
                cmd += ["-ts", url]
            cmd += ["-in", str(src), "-out", str(dst)]
            if dst.exists():
                dst.unlink()  # osslsigncode refuses to overwrite on some versions
            secrets_ = [password.decode("utf-8", "replace")] if password else []
            run(cmd, tool="osslsigncode", secrets_=secrets_, pass_fds=fds, env=opts.tool_env)
    return {"replaced_signature": replaced, "timestamped": bool(opts.timestamp_urls)}


