"""Start-up work that ``ppmi-build sign`` defers (issue #2, speed) must not change behaviour.

Each check runs in a fresh interpreter (this test process has imported everything already).
Expected behaviour comes from cryptography's own documentation and source: ``RFC822Name`` takes a
bare address and refuses a display name ("Invalid rfc822name value", ``x509/general_name.py``),
and ``Name.from_rfc4514_string`` parses RFC 4514 strings (cryptography docs, "X.509 Reference").
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_import_x509_defers_email_utils_and_keeps_rfc822_and_rfc4514_parsing():
    res = _fresh("""
        import sys
        from ppmi_build.cli._common import import_x509
        import_x509()
        print("email.utils loaded:", "email.utils" in sys.modules)
        from cryptography import x509
        from cryptography.x509.oid import NameOID
        print(x509.RFC822Name("user@example.com").value)
        try:
            x509.RFC822Name("Display Name <user@example.com>")
        except ValueError as e:
            print("refused:", e)
        name = x509.Name.from_rfc4514_string("CN=Contoso,O=Example\\\\, Inc.")
        print(name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value)
        import email.utils
        print("real email.utils:", hasattr(email.utils, "formatdate"), email.utils.parseaddr("A <a@b.c>"))
    """)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "email.utils loaded: False"
    assert lines[1] == "user@example.com"
    assert lines[2] == "refused: Invalid rfc822name value"
    assert lines[3] == "Example, Inc."
    assert lines[4] == "real email.utils: True ('A', 'a@b.c')"


def test_sign_command_does_not_import_email_or_asn1crypto():
    """The signing path stays off ``email`` (deferred above) and asn1crypto (DER built directly)."""
    res = _fresh("""
        import sys
        from ppmi_build.cli import _common
        _common.import_x509()
        import ppmi_build.signing.api, ppmi_build.signing.keys, ppmi_build.signing.authenticode.sign
        import ppmi_build.signing.authenticode.verify, ppmi_build.signing.staging
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("email", "asn1crypto", "httpx")))
    """)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
