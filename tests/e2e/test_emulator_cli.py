"""`ppmi-build emulator` refuses an unusable --db with one line and exit 2 (no traceback)."""


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
