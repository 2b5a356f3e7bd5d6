"""`ppmi-build emulator`: an unusable --db or a malformed option is one line and exit 2 (no traceback); the
platform options reach the emulated environment."""


def test_db_in_missing_folder(cli, tmp_path):
    r = cli("emulator", "--port", "0", "--db", tmp_path / "missing" / "state.sqlite")
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot use ") and "--db" in lines[0]
    assert "Traceback" not in r.output
    assert not (tmp_path / "missing").exists()


def test_db_that_is_not_sqlite(cli, tmp_path):
    db = tmp_path / "notes.txt"
    db.write_bytes(b"not a database, and it must stay as it is\n" * 200)
    before = db.read_bytes()
    r = cli("emulator", "--port", "0", "--db", db)
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert "file is not a database" in r.stderr and str(db) in r.stderr
    assert db.read_bytes() == before


def test_platform_options_reach_the_emulated_environment(tmp_path):
    """`--environment-id` and `--application APPID=OBJECTID` set what validate's probe and
    GetComponentManagedIdentityFIC need (the values the README's rehearsal exports)."""
    import os
    import signal
    import subprocess
    import sys

    import httpx

    env_id, app, obj = ("59b86021-2790-4a26-b386-15823676bbf4", "9f3d07ca-381e-43fc-8bef-76dd03b460d6",
                        "bcd7c908-1c4d-4d48-93ee-ff38349a75c8")
    proc = subprocess.Popen([sys.executable, "-m", "ppmi_build", "emulator", "--port", "0", "--environment-id",
                             env_id.upper(), "--application", f"{app}={obj}"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        first = proc.stdout.readline() if proc.stdout else ""
        assert first.startswith("Dataverse emulator listening on "), first
        url = first.split()[-1]
        got = httpx.get(f"{url}/_emulator/dataverse/platform", headers={"Authorization": "Bearer emulator-token"},
                        timeout=10).json()
        assert got["environment_id"] == env_id  # canonical form, as .NET's Guid.ToString("D")
        assert got["applications"] == {app: {"object_id": obj}}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


def test_bad_application_option_is_one_line(cli):
    r = cli("emulator", "--port", "0", "--application", "not-a-pair")
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == ["error: --application 'not-a-pair': write it as APPID=OBJECTID (the "
                                             "application (client) ID, then its app registration's object ID)"]
