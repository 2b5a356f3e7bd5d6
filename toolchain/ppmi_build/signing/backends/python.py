"""The built-in signer as a back-end: Authenticode (signing-spec §1) for assemblies, the NuGet author
signature (signing-spec §2) for packages."""

from __future__ import annotations

from pathlib import Path

from ..keys import KeySource
from ..staging import kind_of
from . import SignOptions


def sign(src: Path, dst: Path, key: KeySource, opts: SignOptions) -> dict:
    """Sign ``src`` into ``dst`` in this process. Returns ``{"replaced_signature", "timestamped"}``."""
    if kind_of(src) == "package":
        from ..nuget.sign import sign_package

        return dict(sign_package(src, dst, key, timestamp_urls=list(opts.timestamp_urls), digest=opts.digest,
                                 overwrite=opts.overwrite))
    from ..authenticode.sign import sign_pe

    out = sign_pe(src, dst, key, digest=opts.digest, program_name=opts.program_name,
                  program_url=opts.program_url, timestamp_urls=opts.timestamp_urls)
    return {"replaced_signature": out.replaced_signature, "timestamped": out.timestamped}
