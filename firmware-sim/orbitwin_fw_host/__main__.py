"""python -m orbitwin_fw_host --count N: run N simulated boards until Ctrl-C."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from orbitwin_fw_host.launch import start_sims, stop_sims


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m orbitwin_fw_host", description=__doc__)
    ap.add_argument("--count", type=int, default=1, help="number of boards (default 1)")
    ap.add_argument("--seed", type=int, default=1, help="weights seed of board0 (board i: seed+i)")
    ap.add_argument("--telemetry-hz", type=float, default=10.0)
    ap.add_argument("--load", type=float, default=0.5, help="initial load set-point 0..1")
    ap.add_argument("--link-dir", default=None, help="directory for stable symlinks")
    ap.add_argument("--threads", action="store_true",
                    help="run boards as threads of one process (default: one process per board)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    args = ap.parse_args(argv)
    sims = start_sims(args.count, args.seed, args.link_dir,
                      mode="thread" if args.threads else "process", telemetry_hz=args.telemetry_hz, load=args.load)
    if args.json:
        print(json.dumps([{"board": h.index, "tty": h.tty_path, "port": h.port_path} for h in sims]))
    else:
        for h in sims:
            print("board%d %s %s" % (h.index, h.tty_path, h.port_path))
    sys.stdout.flush()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_sims(sims)
    return 0


if __name__ == "__main__":
    sys.exit(main())
