"""``python -m ppmi_build.emulator --port N [--db FILE] [--token T] [--vault-certificate NAME=PFX ...]``: run the
emulator until Ctrl-C."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ppmi_build.emulator",
                                     description="Local Dataverse Web API + Entra FIC (Graph, ARM) emulator "
                                                 "(loopback only).")
    parser.add_argument("--port", type=int, default=8080, help="TCP port on 127.0.0.1 (0 = any free port)")
    parser.add_argument("--db", default=None, help="SQLite file for the state (default: in memory)")
    parser.add_argument("--token", default="emulator-token", help="bearer token to accept (default emulator-token)")
    parser.add_argument("--vault-certificate", action="append", default=[], metavar="NAME=PFX",
                        help="serve this PFX as Key Vault certificate NAME (password from PPMI_PFX_PASSWORD; "
                             "repeatable)")
    args = parser.parse_args(argv)
    import os

    from . import make_server, serve_until_interrupted
    from .keyvault.models import PASSWORD_ENV, seed_options

    try:
        options = seed_options(args.vault_certificate, os.environ.get(PASSWORD_ENV))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        server = make_server(port=args.port, db=args.db, token=args.token, options=options)
    except OSError as e:
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {e.strerror}; pick another --port", file=sys.stderr)
        return 2
    print(f"Dataverse emulator listening on {server.state.base_url} (Web API {server.state.base_url}/api/data/v9.2)",
          flush=True)
    serve_until_interrupted(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
