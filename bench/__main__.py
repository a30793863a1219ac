"""`make bench` / `python -m bench`: every benchmark in its quick form, one after another.

Each prints its own ratios against a baseline measured in the same run (pandas.read_csv for
ingest, plain training for DP-SGD, a plaintext sum and Flower's mask generator for SecAgg,
plaintext aggregation for CKKS, pure local training for the simulator). `--full` runs the
large sizes (tens of minutes on 2 cores). Numbers we measured are in bench/README.md.
"""

from __future__ import annotations

import subprocess
import sys
import time

QUICK = [
    ["bench.ingest", "--patients", "5000"],
    ["bench.federation"],
    ["bench.dpsgd", "--patients", "2000"],
    ["bench.secagg", "--quick"],
    ["bench.he", "--quick"],
]
FULL = [["bench.ingest"], ["bench.federation"], ["bench.dpsgd"], ["bench.secagg"], ["bench.he"], ["bench.attacks"]]


def main(argv: list[str]) -> int:
    plan = FULL if "--full" in argv else QUICK
    failed = []
    for args in plan:
        print(f"\n=== python -m {' '.join(args)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", *args])
        print(f"=== {args[0]}: exit {rc}, {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(args[0])
    if failed:
        print(f"failed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
