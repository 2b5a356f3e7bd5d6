"""The public API of ``ppmi_build``: the package docstring's example runs for real, the names are typed
(dataclasses, enums), and importing the package loads nothing heavy until a name is used (PEP 562)."""

from __future__ import annotations

import dataclasses
import doctest
import enum
import json
import subprocess
import sys

import pytest

import ppmi_build


def test_the_package_docstring_example_runs():
    """Signs the shipped demo assembly with a new development certificate, verifies it, computes the FIC."""
    finder = doctest.DocTestFinder(recurse=False)
    [test] = finder.find(ppmi_build, "ppmi_build", globs={})
    assert len(test.examples) > 10, "the example is in the docstring"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.failures == 0 and runner.tries == len(test.examples)


def test_public_names_are_typed():
    for name in ("SignOptions", "SignResult", "VerifyResult", "Problem", "CertificateInfo", "SignProgress"):
        assert dataclasses.is_dataclass(getattr(ppmi_build, name)), name
    assert issubclass(ppmi_build.ArtifactKind, enum.Enum)
    assert [k.value for k in ppmi_build.ArtifactKind] == ["assembly", "package"]
    assert issubclass(ppmi_build.BatchSignError, ppmi_build.PpmiError)
    assert {f.name for f in dataclasses.fields(ppmi_build.Problem)} == {"code", "message"}
    assert {"timestamp_urls", "digest", "backend", "overwrite", "sign_contents", "program_name", "program_url",
            "tool_env"} <= {f.name for f in dataclasses.fields(ppmi_build.SignOptions)}
    assert callable(ppmi_build.resolve_signing_key)
    with pytest.raises(AttributeError):
        ppmi_build.NoSuchName  # noqa: B018


def test_problem_is_the_text_verify_prints():
    """NuGet codes are shown as NuGet shows them ("NU3018: ..."); our own codes are not in the text."""
    p = ppmi_build.Problem("NU3018", "chain building failed")
    assert p == "NU3018: chain building failed" and p.code == "NU3018" and p.message == "chain building failed"
    assert json.loads(json.dumps([p])) == ["NU3018: chain building failed"]
    q = ppmi_build.Problem("AUTHENTICODE_DIGEST_MISMATCH", "the file was modified after signing")
    assert q == "the file was modified after signing"
    assert ppmi_build.Problem.from_text("NU3008: changed").code == "NU3008"


def test_verify_result_json_keeps_problems_as_strings_and_adds_their_codes(tmp_path):
    r = ppmi_build.VerifyResult(path=tmp_path / "a.nupkg", kind=ppmi_build.ArtifactKind.PACKAGE, signed=True,
                                valid=False, problems=[ppmi_build.Problem("NU3018", "untrusted")])
    doc = r.to_json()
    assert doc["kind"] == "package" and doc["problems"] == ["NU3018: untrusted"]
    assert doc["problem_codes"] == ["NU3018"]


def test_a_key_that_requires_a_timestamp_is_refused_without_one(tmp_path):
    """Trusted Signing's certificates live 72 hours (production-keys §3): an untimestamped signature would stop
    verifying then, so signing without a timestamp URL is refused before anything is written."""

    class ShortLived:
        requires_timestamp = True
        description = "trustedsigning:https://eus.codesigning.azure.net/a/p"

        def certificate_chain(self):  # pragma: no cover - never reached: refused first
            raise AssertionError("no signing may start")

    dll = tmp_path / "a.dll"
    dll.write_bytes(b"MZ")
    with pytest.raises(ppmi_build.BadInput, match="must be timestamped"):
        ppmi_build.Signer(ShortLived()).sign(dll)
    assert dll.read_bytes() == b"MZ"


def test_batch_workers_follow_a_remote_key_concurrency():
    from ppmi_build.signing.api import default_workers

    class Remote:
        concurrency = 64

    assert default_workers(Remote(), 100) == 64
    assert default_workers(Remote(), 3) == 3
    assert default_workers(object(), 1) == 1


def test_importing_ppmi_build_loads_no_heavy_library():
    code = ("import sys, ppmi_build; heavy = [m for m in ('cryptography', 'asn1crypto', 'signify') "
            "if m in sys.modules]; print(heavy)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_help_shows_the_api():
    res = subprocess.run([sys.executable, "-c", "import ppmi_build; help(ppmi_build)"], capture_output=True,
                         text=True, timeout=60, env={"PAGER": "cat", "TERM": "dumb", "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    for name in ("Signer", "Verifier", "SignOptions", "VerifyResult", "Problem", "resolve_signing_key", ">>> "):
        assert name in res.stdout, name


def test_problem_codes_name_what_verification_found(tmp_path):
    """A signed assembly changed after signing: our check says AUTHENTICODE_DIGEST_MISMATCH and signify, the
    independent verifier, says INVALID_DIGEST (code SIGNIFY); the JSON lists both codes beside the texts."""
    import shutil

    from ppmi_build.identity.certificates import new_dev_certificate
    from ppmi_build.signing.keys import LocalKey

    key, cert = new_dev_certificate("CN=Contoso Dev", days=30)
    dll = tmp_path / "Contoso.Demo.Plugins.dll"
    with ppmi_build.resources.data().joinpath(dll.name).open("rb") as src, open(dll, "wb") as dst:
        shutil.copyfileobj(src, dst)
    ppmi_build.Signer(LocalKey(private_key=key, chain=[cert])).sign(dll)
    data = bytearray(dll.read_bytes())
    data[0x300] ^= 0xFF  # inside the first section: hashed by the authentihash
    dll.write_bytes(bytes(data))
    result = ppmi_build.Verifier([cert], use_system_roots=False).verify(dll)
    codes = [p.code for p in result.problems]
    assert not result.valid and "AUTHENTICODE_DIGEST_MISMATCH" in codes and "SIGNIFY" in codes
    signify = next(p for p in result.problems if p.code == "SIGNIFY")
    assert signify.startswith("signify: INVALID_DIGEST")
    doc = result.to_json()
    assert doc["problem_codes"] == codes and doc["problems"] == [str(p) for p in result.problems]
