"""The one place the pipeline and the Dataverse commands reach the signing package's public verify/signer
functions (``verify_file``, ``signer_certificate``), so a change of that API is one edit here.

:func:`signature_check` answers "does this artifact carry an intact signature, and by whom?" without judging
trust (the signer may be a private CA or a development certificate): the problems kept are those of integrity —
unsigned, a digest that does not match the content, a signature that does not verify, a malformed certificate
table or signature entry.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PpmiError

#: problem prefixes of ``verify_file`` that are about trust, not integrity
_TRUST_PREFIXES = ("untrusted signer", "signify: ", "no trusted roots")


@dataclass
class SignatureCheck:
    """Attributes:
        signed: a signature is present.
        intact: signed, and the signature verifies over the content (trust not judged).
        signer: the signer certificate (``cryptography`` ``x509.Certificate``) or None.
        problems: what is wrong, in ``verify_file``'s words (empty when ``intact``).
    """

    signed: bool
    intact: bool
    signer: Any = None
    problems: list[str] = field(default_factory=list)

    def summary(self, name: str) -> str:
        """One clause naming what is wrong (``"X.dll is not signed"``, the reader's own message for a malformed
        file, ``"the signature of X.dll does not verify: …"``), or ``"… carries an intact signature"``;
        ``name`` is how the artifact is called (a file name, "the content Dataverse holds for …")."""
        if self.intact:
            return f"{name} carries an intact signature"
        if not self.signed:
            return self.problems[0] if self.problems else f"{name} is not signed"
        return f"the signature of {name} does not verify: {self.problems[0]}"


def signature_check(path: Path | str) -> SignatureCheck:
    """Integrity of the Authenticode (``.dll``) or NuGet author (``.nupkg``) signature of ``path``. Never raises
    for a broken file: an unreadable or malformed artifact is ``signed=False`` with the reason."""
    from ..signing.api import signer_certificate, verify_file

    try:
        signer: Any = signer_certificate(path)
    except PpmiError as e:
        return SignatureCheck(False, False, None, [e.message])
    if isinstance(signer, (list, tuple)):  # older signing APIs returned a list
        signer = signer[0] if signer else None
    if signer is None:
        return SignatureCheck(False, False, None, [])
    try:
        result = verify_file(path, trusted_roots=[signer])
    except PpmiError as e:
        return SignatureCheck(True, False, signer, [e.message])
    problems = [str(p) for p in result.problems if not p.startswith(_TRUST_PREFIXES)]
    if not result.signed:
        return SignatureCheck(False, False, None, problems)
    return SignatureCheck(True, not problems, signer, problems)


def signature_check_bytes(data: bytes, kind: str, label: str = "the content") -> SignatureCheck:
    """:func:`signature_check` of artifact bytes (``kind`` ``assembly``/``package``), e.g. the ``content``
    Dataverse holds, via a private temporary file; ``label`` replaces that file's name in the problems."""
    fd, name = tempfile.mkstemp(prefix="ppmi-held-", suffix=".nupkg" if kind == "package" else ".dll")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        check = signature_check(name)
        check.problems = [p.replace(name, label).replace(Path(name).name, label) for p in check.problems]
        return check
    finally:
        os.unlink(name)
