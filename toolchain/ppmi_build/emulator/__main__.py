"""``python -m ppmi_build.emulator --port N [--db FILE] [--token T]``: run the emulator until Ctrl-C."""

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
    args = parser.parse_args(argv)
    from . import make_server, serve_until_interrupted

    try:
        server = make_server(port=args.port, db=args.db, token=args.token)
    except OSError as e:
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {e.strerror}; pick another --port", file=sys.stderr)
        return 2
    print(f"Dataverse emulator listening on {server.state.base_url} (Web API {server.state.base_url}/api/data/v9.2)",
          flush=True)
    serve_until_interrupted(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
