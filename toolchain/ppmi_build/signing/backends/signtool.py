"""signtool (Windows SDK) as an Authenticode back-end (signing-spec §1); the key goes in a password-less PFX
in a private folder, never ``/p PASSWORD``."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from ...errors import BadInput, ToolNotFound
from ..keys import KeySource
from ..staging import kind_of
from . import SignOptions
from ._runner import PrivateDir, argv_safe_urls, key_material, run


def find_signtool() -> str | None:
    if sys.platform != "win32":
        return None
    return shutil.which("signtool") or shutil.which("signtool.exe")


def sign(src: Path, dst: Path, key: KeySource, opts: SignOptions) -> dict:  # pragma: no cover - Windows
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    from ..authenticode import pe
    if kind_of(src) != "assembly":
        raise BadInput(f"--backend signtool signs PE files (.dll/.exe) only, not {src.name}; use --backend python")
    exe = find_signtool()
    if exe is None:
        raise ToolNotFound(
            "signtool is not available: it ships with the Windows SDK and runs on Windows only; "
            "use --backend python (the default) or --backend osslsigncode"
        )
    local = key_material(key)
    replaced = pe.parse(pe.read_file(src), src.name).signed
    shutil.copyfile(src, dst)
    with PrivateDir() as holder:
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
            cmd += ["/tr", argv_safe_urls(opts.timestamp_urls[:1], "signtool")[0], "/td", opts.digest.upper()]
        cmd.append(str(dst))
        run(cmd, tool="signtool", env=opts.tool_env)
    return {"replaced_signature": replaced, "timestamped": bool(opts.timestamp_urls)}


