"""``ppmi-build rotate`` against the Dataverse and Entra emulators over loopback HTTP.

Shown: the new FIC is added before Dataverse changes (request order in the emulator log); the cap is counted
first (19 existing: the rotation adds the 20th; 20 existing: refused with exit 1, naming the stale FIC, no write
request); the old FIC goes only with --retire-old (or the printed command); a failure injected after the new FIC
was added and before bind rolls back (old artifact bound, its FIC present, new FIC removed, local file restored).

Independent checks: the FIC subjects are computed here from the documented formulas (domain-spec §1.2: v2
trusted-issuer ``i/{base64url(SHA-256(UTF-8 .NET issuer DN))}/s/{… subject DN}``, self-signed ``h/{sha256}``)
with the .NET DN strings written by hand from the reversal rule; the content Dataverse holds is verified with
osslsigncode.
"""

from __future__ import annotations

import base64
import hashlib
import shlex
import shutil

import pytest

from tests.conftest import run_tool
from tests.emulator_fixture import emulator  # noqa: F401
from tests.pipeline_helpers import (
    ENCODED_TENANT,
    ENV_DEV,
    graph_fics,
    held_component,
    openssl_sha256,
    parse_json,
    seed_graph_fics,
    self_signed_subject,
    sha256_file,
    write_project,
    writes,
)
from tests.pki import CODE_SIGNING, make_cert


def dn_hash(dn: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(dn.encode("utf-8")).digest()).decode().rstrip("=")


# tests/pki.py names are DER (O, CN); .NET prints them reversed: "CN=…, O=…" (domain-spec §1.2)
LEAF_SUBJECT = "/eid1/c/pub/t/{t}/a/qzXoWDkuqUa3l6zM5mM0Rw/n/plugin/e/{e}/i/{i}/s/{s}".format(
    t=ENCODED_TENANT, e=ENV_DEV, i=dn_hash("CN=ppmi-build Test Code Signing CA, O=ppmi-build tests"),
    s=dn_hash("CN=Contoso Plug-in Signing, O=ppmi-build tests"))


@pytest.fixture(scope="session")
def third_cert(tmp_path_factory):
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    out = tmp_path_factory.mktemp("third")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Contoso Rotation Three")])
    return make_cert("three", name, rsa.generate_private_key(public_exponent=65537, key_size=2048), None,
                     eku=[CODE_SIGNING], out=out)


@pytest.fixture
def setup(cli, tmp_path, emulator, monkeypatch, password_env, strong_named_dll, pki):  # noqa: F811
    monkeypatch.setenv("PPMI_ACCESS_TOKEN", emulator.token)
    monkeypatch.setenv("PPMI_HTTP_BACKOFF", "0.01")
    monkeypatch.setenv("PPMI_HTTP_RETRIES", "1")
    for var in ("PPMI_PFX_BASE64", "PPMI_CERT", "PPMI_TIMESTAMP_URLS", "PPMI_GRAPH_URL", "PPMI_ARM_URL"):
        monkeypatch.delenv(var, raising=False)
    dll = tmp_path / "out" / strong_named_dll.name
    dll.parent.mkdir()
    shutil.copyfile(strong_named_dll, dll)
    proj = write_project(tmp_path / "proj", graph_url=emulator.url, envs={"dev": (emulator.url, ENV_DEV)},
                         cert=pki.self_signed.pfx)
    r = cli("release", "--env", "dev", "--project", proj, dll, "--json")
    assert r.exit_code == 0, r.stderr
    return proj, dll


def rotate(cli, proj, dll, cert, *extra):
    return cli("rotate", "--env", "dev", "--project", proj, "--new-cert", cert, dll, "--json", *extra)


def subjects(emulator):  # noqa: F811
    return {f["subject"] for f in graph_fics(emulator)}


@pytest.mark.interop
def test_rotate_at_19_adds_the_20th_then_retires(cli, emulator, setup, pki, tmp_path):  # noqa: F811
    proj, dll = setup
    old_subject = self_signed_subject(ENV_DEV, openssl_sha256(pki.self_signed.pem))
    assert subjects(emulator) == {old_subject}
    seed_graph_fics(emulator, 18)  # 19 FICs
    mark = len(emulator.requests())
    r = rotate(cli, proj, dll, pki.leaf.pfx)
    assert r.exit_code == 0, r.stderr
    doc = parse_json(r)
    log = emulator.requests()[mark:]
    fic_post = next(i for i, q in enumerate(log)
                    if q["method"] == "POST" and "federatedIdentityCredentials" in q["path"])
    content_patch = next(i for i, q in enumerate(log) if q["method"] == "PATCH" and "pluginassemblies" in q["path"])
    assert fic_post < content_patch  # the new FIC exists before Dataverse changes
    assert len(graph_fics(emulator)) == 20
    assert {old_subject, LEAF_SUBJECT} <= subjects(emulator)  # old FIC kept without --retire-old
    assert "retire_command" in doc and "--retire-old" in doc["retire_command"]

    # Dataverse holds the re-signed file, signed by the new certificate (osslsigncode, trusting the test root)
    held = tmp_path / "held.dll"
    held.write_bytes(base64.b64decode(held_component(emulator)["content"]))
    assert held.read_bytes() == dll.read_bytes()
    v = run_tool("osslsigncode", "verify", "-in", held, "-CAfile", pki.root.pem)
    assert v.returncode == 0 and "Contoso Plug-in Signing" in v.stdout, v.stdout + v.stderr
    mi = emulator.rows("managedidentity")
    assert len(mi) == 1 and mi[0]["version"] == 2 and held_component(emulator)["managedidentityid"] == \
        mi[0]["managedidentityid"]

    # the printed command retires the old FIC later and converges (nothing else changes)
    args = shlex.split(doc["retire_command"])[1:]
    assert args[-1] == str(dll)
    mark = len(emulator.requests())
    r = cli(*args, "--project", proj, "--json")
    assert r.exit_code == 0, r.stderr
    assert [w["method"] for w in writes(emulator, mark)] == ["DELETE"]
    assert old_subject not in subjects(emulator) and LEAF_SUBJECT in subjects(emulator)
    assert len(graph_fics(emulator)) == 19


@pytest.mark.slow
def test_rotate_at_20_is_refused_naming_stale_fics(cli, emulator, setup, pki, third_cert):  # noqa: F811
    proj, dll = setup
    r = rotate(cli, proj, dll, pki.leaf.pfx)  # A -> B, A's FIC stays: 2 FICs
    assert r.exit_code == 0, r.stderr
    old_name = next(f["name"] for f in graph_fics(emulator)
                    if f["subject"] == self_signed_subject(ENV_DEV, openssl_sha256(pki.self_signed.pem)))
    seed_graph_fics(emulator, 18)  # 20 FICs
    mark, before = len(emulator.requests()), sha256_file(dll)
    for extra in ((), ("--retire-old",)):
        r = rotate(cli, proj, dll, third_cert.pfx, *extra)
        assert r.exit_code == 1
        msg = parse_json(r)["error"]["message"]
        assert "20" in msg and old_name in msg
        assert writes(emulator, mark) == [] and sha256_file(dll) == before
    # retire the stale FIC, then the rotation fits
    r = cli("rotate", "--env", "dev", "--project", proj, "--new-cert", pki.leaf.pfx, dll, "--retire-old",
            "--old-fic", old_name)
    assert r.exit_code == 0, r.stderr
    r = rotate(cli, proj, dll, third_cert.pfx, "--retire-old")
    assert r.exit_code == 0, r.stderr
    sha3 = openssl_sha256(third_cert.pem)
    assert self_signed_subject(ENV_DEV, sha3) in subjects(emulator) and LEAF_SUBJECT not in subjects(emulator)
    assert len(graph_fics(emulator)) == 19


def assert_rolled_back(emulator, dll, old_held, old_local, old_subject, actions):  # noqa: F811
    assert any(a["kind"] == "rollback" and a["status"] == "rolled-back" for a in actions)
    posted = [q for q in emulator.requests() if q["method"] == "POST" and "federatedIdentity" in q["path"]]
    assert posted, "the failure came after the new FIC was added"
    held = held_component(emulator)
    assert held["content"] == old_held["content"]  # the old artifact in Dataverse
    assert held["managedidentityid"] == old_held["managedidentityid"]  # still bound
    assert subjects(emulator) == {old_subject}  # its FIC present, the new one removed again
    assert dll.read_bytes() == old_local  # local artifact restored
    assert not [p for p in dll.parent.iterdir() if p != dll]  # no temp file left


def test_register_failure_rolls_back(cli, emulator, setup, pki):  # noqa: F811
    """The content update fails after the new FIC was added: Dataverse still holds the old artifact."""
    proj, dll = setup
    old_subject = self_signed_subject(ENV_DEV, openssl_sha256(pki.self_signed.pem))
    old_held, old_local = held_component(emulator), dll.read_bytes()
    emulator.add_fault(method="PATCH", path_contains="pluginassemblies", status=400, times=1)
    r = rotate(cli, proj, dll, pki.leaf.pfx)
    assert r.exit_code == 3
    doc = parse_json(r)
    assert "rolled back" in doc["error"]["message"]
    assert_rolled_back(emulator, dll, old_held, old_local, old_subject, doc["actions"])


def test_failure_before_bind_after_new_content_rolls_back(emulator, setup, pki):  # noqa: F811
    """The new content is registered, then the read of the identity record before the bind fails: the old
    content is registered again."""
    from ppmi_build.errors import ServiceError
    from ppmi_build.pipeline.rotate import run_rotate

    proj, dll = setup
    old_subject = self_signed_subject(ENV_DEV, openssl_sha256(pki.self_signed.pem))
    old_held, old_local = held_component(emulator), dll.read_bytes()
    armed = []

    def progress(msg: str) -> None:  # arm the fault when the register step starts
        if "registering" in msg and not armed:
            armed.append(emulator.add_fault(method="GET", path_contains="managedidentities", status=500, times=1))

    with pytest.raises(ServiceError) as e:
        run_rotate("dev", pki.leaf.pfx, dll, start=proj, progress=progress)
    assert armed and e.value.exit_code == 3 and "rolled back" in e.value.message
    actions = e.value.partial.to_json()["actions"]
    assert ("pluginassembly", "updated") in [(a["kind"], a["status"]) for a in actions]  # new content went in
    assert_rolled_back(emulator, dll, old_held, old_local, old_subject, actions)


def test_rotate_plan_writes_nothing(cli, emulator, setup, pki):  # noqa: F811
    proj, dll = setup
    mark, before = len(emulator.requests()), sha256_file(dll)
    r = rotate(cli, proj, dll, pki.leaf.pfx, "--plan", "--retire-old")
    assert r.exit_code == 0, r.stderr
    doc = parse_json(r)
    st = [(a["kind"], a["status"]) for a in doc["actions"]]
    assert ("fic", "planned") in st and ("sign", "planned") in st and ("pluginassembly", "planned") in st
    assert writes(emulator, mark) == [] and sha256_file(dll) == before


def test_rotate_bad_input(cli, emulator, setup, tmp_path):  # noqa: F811
    proj, dll = setup
    mark, before = len(emulator.requests()), sha256_file(dll)
    r = rotate(cli, proj, dll, tmp_path / "nope.pfx")
    assert r.exit_code == 2 and "nope.pfx" in r.stderr
    assert writes(emulator, mark) == [] and sha256_file(dll) == before


def test_old_fic_of_another_environment_is_refused(cli, emulator, setup, pki):  # noqa: F811
    proj, dll = setup
    seed_graph_fics(emulator, 1, prefix="github")  # subject names no Power Platform environment
    mark, before = len(emulator.requests()), sha256_file(dll)
    r = rotate(cli, proj, dll, pki.leaf.pfx, "--retire-old", "--old-fic", "github-0")
    assert r.exit_code == 2 and "not a FIC of environment dev" in r.stderr
    assert writes(emulator, mark) == [] and sha256_file(dll) == before
    assert "github-0" in {f["name"] for f in graph_fics(emulator)}


# --- new-user test findings ------------------------------------------------------------------------------------


def test_rotate_without_artifact_or_project_writes_nothing(cli, emulator, setup, pki):  # noqa: F811
    """No ARTIFACT and no .csproj: refused before any write. It used to create the new FIC, then fail the build
    with exit 2 and leave the FIC in Graph."""
    proj, dll = setup
    old_held, fics = held_component(emulator), graph_fics(emulator)
    mark = len(emulator.requests())
    r = cli("rotate", "--env", "dev", "--project", proj, "--new-cert", pki.leaf.pfx, "--json")
    assert r.exit_code == 2
    doc = parse_json(r)
    assert "no .csproj" in doc["error"]["message"] and doc["error"]["exit_code"] == 2
    assert [(a["kind"], a["status"]) for a in doc["actions"]] == [("build", "failed")]
    assert writes(emulator, mark) == []
    assert graph_fics(emulator) == fics and held_component(emulator) == old_held


def test_unusable_new_certificate_is_refused_before_any_write(cli, emulator, setup, pki):  # noqa: F811
    """A certificate without the code-signing EKU cannot sign: refused before the new FIC is created."""
    proj, dll = setup
    mark, before, fics = len(emulator.requests()), sha256_file(dll), graph_fics(emulator)
    r = rotate(cli, proj, dll, pki.no_codesigning.pfx)
    assert r.exit_code == 2
    assert "code-signing EKU" in parse_json(r)["error"]["message"]
    assert writes(emulator, mark) == [] and sha256_file(dll) == before and graph_fics(emulator) == fics


def test_signing_failure_after_the_new_fic_rolls_back(cli, emulator, setup, pki, tsa):  # noqa: F811
    """The timestamp server fails while re-signing, after the new FIC was added: the new FIC is removed again."""
    proj, dll = setup
    old_subject = self_signed_subject(ENV_DEV, openssl_sha256(pki.self_signed.pem))
    old_held, old_local = held_component(emulator), dll.read_bytes()
    r = rotate(cli, proj, dll, pki.leaf.pfx, "--timestamp-url", tsa.url + "fail")
    assert r.exit_code == 3
    doc = parse_json(r)
    assert "rolled back" in doc["error"]["message"] and "the new FIC was removed" in doc["error"]["message"]
    assert ("sign", "failed") in [(a["kind"], a["status"]) for a in doc["actions"]]
    assert ("fic", "rolled-back") in [(a["kind"], a["status"]) for a in doc["actions"]]
    assert_rolled_back(emulator, dll, old_held, old_local, old_subject, doc["actions"])


def test_cap_message_names_the_fic_in_use(cli, emulator, setup, pki):  # noqa: F811
    """20 FICs: the deployed plug-in's (made by ppmi-build) and 19 others. The refusal lists the one in use as one
    that must stay; it used to say "none of them was created by ppmi-build"."""
    proj, dll = setup
    (in_use,) = [f["name"] for f in graph_fics(emulator)]
    seed_graph_fics(emulator, 19)
    mark, before = len(emulator.requests()), sha256_file(dll)
    r = rotate(cli, proj, dll, pki.leaf.pfx)
    assert r.exit_code == 1
    msg = parse_json(r)["error"]["message"]
    assert f"created by ppmi-build and in use (must stay): {in_use}" in msg
    assert "19 were not created by ppmi-build" in msg and "none of them" not in msg and "could go:" not in msg
    assert writes(emulator, mark) == [] and sha256_file(dll) == before


def test_next_step_points_the_configuration_at_the_new_certificate(cli, emulator, setup, pki):  # noqa: F811
    """After a rotation the output says exactly which ppmi.toml line to change; until it is changed, doctor warns;
    with the line applied, the next release keeps the new certificate and adds no FIC."""
    from ppmi_build.pipeline.doctor import run_doctor

    proj, dll = setup
    new = proj / "certs" / "contoso-2027.pfx"
    new.parent.mkdir()
    shutil.copyfile(pki.leaf.pfx, new)
    line = 'certificate = "certs/contoso-2027.pfx"'  # relative to the folder of ppmi.toml
    r = cli("rotate", "--env", "dev", "--project", proj, "--new-cert", new, dll)  # human output
    assert r.exit_code == 0, r.stderr
    out = r.stdout.splitlines()
    assert f"    {line}" in out and any("[signing] certificate" in x for x in out)
    assert r.stdout.count("stays until you retire it") == 1 and "stays until" not in r.stderr  # note: once

    r = rotate(cli, proj, dll, new)  # converges; the configuration still names the old certificate
    assert r.exit_code == 0, r.stderr
    doc = parse_json(r)
    assert any(line in s for s in doc["next_steps"]) and "note:" not in r.stderr

    checks = {c.name: c for c in run_doctor(proj).checks}
    cert_check = checks["environment:dev:certificate"]
    assert cert_check.status == "warn" and "Contoso Plug-in Signing" in cert_check.detail
    assert "[signing] certificate" in cert_check.detail

    toml = proj / "ppmi.toml"
    toml.write_text(toml.read_text().replace(f'certificate = "{pki.self_signed.pfx}"', line))
    checks = {c.name: c for c in run_doctor(proj).checks}
    assert "environment:dev:certificate" not in checks and checks["environment:dev:fic"].status == "ok"
    fics, mark = graph_fics(emulator), len(emulator.requests())
    r = cli("release", "--env", "dev", "--project", proj, dll, "--json")
    assert r.exit_code == 0, r.stderr
    assert parse_json(r)["changed"] is False and writes(emulator, mark) == [] and graph_fics(emulator) == fics
    r = rotate(cli, proj, dll, new)
    assert r.exit_code == 0 and "next_steps" not in parse_json(r)


def test_status_column_fits_rolled_back():
    """Every status, ``rolled-back`` included, leaves the kind column where it is (human output)."""
    from ppmi_build.dataverse.actions import Action
    from ppmi_build.pipeline.plan import Plan

    p = Plan("rotate", "dev", apply=True)
    for status, kind in (("created", "fic"), ("rolled-back", "rollback"), ("unchanged", "verify")):
        p.add(kind, "x", status)
    lines = p.human().splitlines()[1:4]
    assert len({ln.index(k) for ln, k in zip(lines, ("fic", "rollback", "verify"), strict=True)}) == 1, lines
    rows = [Action(k, "x", s).line() for s, k in (("created", "fic"), ("rolled-back", "rb"), ("failed", "bind"))]
    assert len({r.index(k) for r, k in zip(rows, ("fic", "rb", "bind"), strict=True)}) == 1, rows
