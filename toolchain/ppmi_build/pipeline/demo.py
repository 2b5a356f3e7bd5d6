"""``ppmi-build demo``: the whole main job on an embedded default, offline.

Steps (each one a library call the real commands use too):

1. make a self-signed development code-signing certificate (RSA 3072, codeSigning EKU) in a
   temporary folder (``identity.certificates.new_dev_certificate``);
2. Authenticode-sign a copy of the real .NET assembly shipped as package data
   (``ppmi_build/data/Contoso.Demo.Plugins.dll``, strong-named) with the built-in signer;
3. verify it, trusting only that development certificate (``signing.api.verify_file``);
4. compute the FIC issuer, subject identifier and audience for managed-identity version 2 for a
   documented example tenant and environment (``identity.fic.compute_fic``);
5. optionally (``with_dataverse``) start the local Dataverse emulator, register the signed
   assembly and bind a ``managedidentities`` row to it, then read back what the emulator holds.

The example IDs are published values: tenant ``5f8a1a9f-2e1a-415f-b10c-84c3736a21b9`` is the
tenant of Microsoft's "Set up managed identity" page example issuer (domain-spec §1.1), and
environment ``7efcc31a-c410-e20e-9b95-dd448cedf653`` is the environment ID of the published v1
walk-through (domain-spec §7 E, [WODTKE-2026]).
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import resources

EXAMPLE_TENANT_ID = "5f8a1a9f-2e1a-415f-b10c-84c3736a21b9"
EXAMPLE_ENVIRONMENT_ID = "7efcc31a-c410-e20e-9b95-dd448cedf653"
EXAMPLE_APPLICATION_ID = "9f3d07ca-381e-43fc-8bef-76dd03b460d6"  # domain-spec §7 I payload
DEMO_ASSEMBLY = "Contoso.Demo.Plugins.dll"


@dataclass
class DemoResult:
    workdir: Path
    certificate: dict[str, Any]
    sign: dict[str, Any]
    verify: dict[str, Any]
    fic: dict[str, Any]
    dataverse: dict[str, Any] | None = None
    steps: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = {
            "workdir": str(self.workdir),
            "certificate": self.certificate,
            "sign": self.sign,
            "verify": self.verify,
            "fic": self.fic,
        }
        if self.dataverse is not None:
            out["dataverse"] = self.dataverse
        return out


def run_demo(
    workdir: Path | None = None,
    *,
    timestamp_urls: tuple[str, ...] = (),
    with_dataverse: bool = True,
    progress=lambda msg: None,
) -> DemoResult:
    """Run the demo in ``workdir`` (a new temporary folder when None; it is kept so the user can
    look at the files). Returns a :class:`DemoResult`. Raises the usual PpmiError subclasses."""
    from cryptography.hazmat.primitives import serialization

    from ..identity.certificates import describe, new_dev_certificate, write_pfx
    from ..identity.fic import compute_fic
    from ..signing.api import sign_file, verify_file
    from ..signing.keys import LocalKey

    workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="ppmi-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)

    progress("1/5 making a development code-signing certificate (RSA 3072, self-signed)")
    key, cert = new_dev_certificate("CN=ppmi-build Demo, E=demo@contoso.example", days=30)
    password = secrets.token_urlsafe(24).encode()
    write_pfx(workdir / "demo-signing.pfx", key, cert, password)
    pw_file = workdir / "demo-signing.password"  # owner-only, so the demo PFX can be reused (--password-file)
    pw_file.touch(mode=0o600)
    pw_file.write_bytes(password + b"\n")
    (workdir / "demo-signing.cer").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    (workdir / "demo-signing.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    progress(f"2/5 Authenticode-signing {DEMO_ASSEMBLY}")
    target = workdir / DEMO_ASSEMBLY
    with resources.data().joinpath(DEMO_ASSEMBLY).open("rb") as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    signed = sign_file(target, LocalKey(private_key=key, chain=[cert], source="demo certificate"),
                       timestamp_urls=timestamp_urls)

    progress("3/5 verifying the signature (trusting the development certificate only)")
    verified = verify_file(target, trusted_roots=[cert])

    progress("4/5 computing the federated identity credential (managed identity version 2)")
    fic = compute_fic(cert, tenant_id=EXAMPLE_TENANT_ID, environment_id=EXAMPLE_ENVIRONMENT_ID, version=2)
    fic_json = {
        "version": fic.version,
        "issuer": fic.issuer,
        "subject": fic.subject,
        "audience": fic.audience,
        "name": fic.name,
        "tenant_id": EXAMPLE_TENANT_ID,
        "environment_id": EXAMPLE_ENVIRONMENT_ID,
    }
    result = DemoResult(workdir, describe(cert), signed.to_json(), verified.to_json(), fic_json)

    if with_dataverse:
        progress("5/5 registering and binding in a local Dataverse emulator")
        result.dataverse = _dataverse_step(target, cert)
    return result


def _dataverse_step(artifact: Path, cert) -> dict[str, Any]:
    """Register + bind the signed demo assembly in an in-process emulator and read it back."""
    from ..emulator import start
    from .demo_dataverse import register_and_bind

    with start() as emu:
        return register_and_bind(emu, artifact, tenant_id=EXAMPLE_TENANT_ID,
                                 application_id=EXAMPLE_APPLICATION_ID)
