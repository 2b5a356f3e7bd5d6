"""Every ``ppmi-build`` example in README.md (fenced ``sh`` blocks) and docs/usage/*.md (``console`` blocks,
``$ ppmi-build …`` lines) must be accepted by the command line as written: the command exists and click accepts
its options and values (the same parsing a real run does, without running it). The README's examples that need
neither .NET nor a service (``cert``, ``init``, ``snk``, ``fic --cert``/``--thumbprint``) are run in order in a
scratch folder, so each one finds the files the previous ones created.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs" / "usage").glob("*.md"))]


def examples(path: Path) -> list[tuple[int, list[str]]]:
    """``(line number, argv after 'ppmi-build')`` of every example in ``path``."""
    out = []
    lang = None
    pending = ""
    start = 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fence = re.match(r"^```(\w*)", line)
        if fence:
            lang = None if lang is not None else (fence.group(1) or "")
            continue
        if lang not in ("sh", "console"):
            continue
        text = line.strip()
        if lang == "console":
            if not (text.startswith("$ ppmi-build") or pending):
                continue
            text = text[2:] if text.startswith("$ ") else text
        if not pending:
            start = number
        pending += text[:-1] + " " if text.endswith("\\") else text
        if text.endswith("\\"):
            continue
        cmd, pending = pending, ""
        words = shlex.split(cmd, comments=True)
        words = [w for w in words if w != "&"]
        cut = next((i for i, w in enumerate(words) if w in ("|", "&&", ";", "||") or re.match(r"^\d?>", w)), None)
        words = words[:cut]  # the shell's redirections and pipes are not ppmi-build's arguments
        if words[:1] == ["ppmi-build"]:
            out.append((start, words[1:]))
    return out


ALL = [(f"{p.relative_to(ROOT)}:{n}", argv) for p in DOCS for n, argv in examples(p)]


def parse_only(argv: list[str]) -> click.Context:
    """Resolve the command and parse its options and values exactly as a run would; nothing is executed."""
    from ppmi_build.cli import main

    cmd: click.Command = main
    name, parent, args = "ppmi-build", None, list(argv)
    while True:
        ctx = cmd.make_context(name, args, parent=parent)
        if not isinstance(cmd, click.Group):
            return ctx
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        sub_name, sub, args = cmd.resolve_command(ctx, rest)
        assert sub is not None, argv
        name, parent, cmd = sub_name or "", ctx, sub


def test_every_document_has_examples():
    assert len(ALL) >= 40
    found = {argv[0] for _, argv in ALL}
    from ppmi_build.cli import COMMANDS

    assert set(COMMANDS) - {"demo"} <= found | {"demo"}, set(COMMANDS) - found


#: examples that need a build output (.NET SDK), a service or a file the user brings: parsed only
def _runs_offline(argv: list[str]) -> bool:
    if argv[0] in ("init", "snk"):
        return True
    if argv[0] == "cert":
        return True
    return argv[0] == "fic" and ("--cert" in argv or "--thumbprint" in argv)


@pytest.fixture(scope="module")
def dev_certs(tmp_path_factory):
    """``certs/contoso-dev.pfx`` and ``.cer`` as the README's first example makes them."""
    from click.testing import CliRunner

    from ppmi_build.cli import main

    folder = tmp_path_factory.mktemp("docs-certs") / "certs"
    r = CliRunner().invoke(main, ["cert", "new", "--subject", "CN=Contoso Dev", "--out", str(folder), "--name",
                                  "contoso-dev", "--no-password"])
    assert r.exit_code == 0, r.output
    return folder


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    for var in [v for v in os.environ if v.startswith("PPMI_")]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PPMI_PFX_PASSWORD", "docs-example-password")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_examples_run_in_order(cli, scratch):
    ran = []
    for where, argv in ALL:
        if not where.startswith("README.md") or not _runs_offline(argv):
            continue
        r = cli(*argv)
        assert r.exit_code == 0, (where, argv, r.stdout, r.stderr)
        ran.append(argv[0])
    assert (scratch / "certs" / "contoso-dev.pfx").is_file() and (scratch / "certs" / "contoso-dev.cer").is_file()
    assert (scratch / "contoso-assembly" / "src" / "Contoso.Assembly.snk").is_file()
    assert ran.count("fic") == 2 and ran.count("cert") == 2 and "snk" in ran


@pytest.mark.parametrize("where, argv", ALL, ids=[w for w, _ in ALL])
def test_example_parses(scratch, dev_certs, where, argv):
    import shutil

    shutil.copytree(dev_certs, scratch / "certs")  # what the README's first example creates
    try:
        parse_only(argv)
    except click.exceptions.Exit:
        pass
    except click.UsageError as e:
        if isinstance(e, click.BadParameter) and "does not exist" in e.format_message():
            return  # a file the example's reader brings (a build output, their own certificate)
        pytest.fail(f"{where}: ppmi-build {shlex.join(argv)}: {e.format_message()}")
