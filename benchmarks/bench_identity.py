"""Identity benchmarks: .NET DN rendering, DN parsing, FIC computation, development certificates.

Targets (2-core CI machine):

* ``dotnet_name`` of the 13-RDN microsoft.com subject (dotnet/runtime ``PrintComplexReversed``): median < 100 µs
* ``parse_dotnet_dn`` + DER of a 9-RDN PowerShell-style subject: median < 300 µs
* ``compute_fic`` version 2 for a CA-issued certificate (two DN hashes, self-signed check): median < 2 ms
* ``new_dev_certificate`` (RSA 3072 key generation + signing): median < 5 s (key generation dominates)
"""

from __future__ import annotations

import statistics
import time


def _measure(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _row(name: str, times: list[float], target_s: float) -> None:
    med = statistics.median(times)
    unit, scale = ("µs", 1e6) if target_s < 1e-2 else ("ms", 1e3)
    status = "ok" if med <= target_s else "SLOW"
    print(f"{name:<44} median {med * scale:9.1f} {unit}   target {target_s * scale:9.1f} {unit}   "
          f"ratio {med / target_s:5.2f}  {status}")


def main(argv: list[str]) -> None:
    from ppmi_build.identity.certificates import new_dev_certificate
    from ppmi_build.identity.dn import dotnet_name, encode_dotnet_dn
    from ppmi_build.identity.fic import compute_fic

    ms_subject = bytes.fromhex(
        "3082010F31133011060B2B0601040182373C02010313025553311B3019060B2B"
        "0601040182373C0201020C0A57617368696E67746F6E311D301B060355040F13"
        "1450726976617465204F7267616E697A6174696F6E3112301006035504051309"
        "363030343133343835310B3009060355040613025553310E300C06035504110C"
        "0539383035323113301106035504080C0A57617368696E67746F6E3110300E06"
        "035504070C075265646D6F6E643118301606035504090C0F31204D6963726F73"
        "6F667420576179311E301C060355040A0C154D6963726F736F667420436F7270"
        "6F726174696F6E310E300C060355040B0C054D53434F4D311A30180603550403"
        "0C117777772E6D6963726F736F66742E636F6D")
    _row("dotnet_name(microsoft.com subject)", _measure(lambda: dotnet_name(ms_subject), 2000), 100e-6)

    dn = ('E=ops@contoso.example, CN="Contoso, Inc. Plug-ins", OU=Platform, O=Contoso Ltd, STREET=1 Main St, '
          "L=Redmond, S=Washington, C=US, SERIALNUMBER=42")
    _row("parse_dotnet_dn + DER (9 RDNs)", _measure(lambda: encode_dotnet_dn(dn), 1000), 300e-6)

    t0 = time.perf_counter()
    ca_key, ca = new_dev_certificate("CN=Bench CA, O=Contoso", key_size=2048)
    keygen = time.perf_counter() - t0
    leaf_key, leaf = new_dev_certificate("CN=Bench Leaf, O=Contoso", key_size=2048)
    # re-issue the leaf under the "CA" so compute_fic takes the CA-issued (two DN hashes) path
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    now = dt.datetime.now(dt.UTC)
    issued = (x509.CertificateBuilder().subject_name(leaf.subject).issuer_name(ca.subject)
              .public_key(leaf_key.public_key()).serial_number(2).not_valid_before(now)
              .not_valid_after(now + dt.timedelta(days=1)).sign(ca_key, hashes.SHA256()))
    _row("compute_fic v2 (CA-issued)", _measure(lambda: compute_fic(
        issued, tenant_id="5f8a1a9f-2e1a-415f-b10c-84c3736a21b9",
        environment_id="7efcc31a-c410-e20e-9b95-dd448cedf653"), 500), 2e-3)
    print(f"{'(new_dev_certificate RSA 2048, one run)':<44} {keygen * 1e3:9.1f} ms")

    _row("new_dev_certificate (RSA 3072)", _measure(lambda: new_dev_certificate("CN=Bench Dev"), 5), 5.0)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
