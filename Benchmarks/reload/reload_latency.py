#!/usr/bin/env python3
"""Reload latency: from the rename of the versions file to the moment every worker routes
with the new weights, over 100 reloads. Workers record when they switched (CLOCK_MONOTONIC,
the clock Python's time.monotonic_ns reads), and /status reports it, so the figure is not
limited by how fast this script polls.

    python3 Benchmarks/reload/reload_latency.py [--reloads 100] [--workers 2]
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "Tests", "integration"))
# The release build unless told otherwise; set before the harness reads it at import.
os.environ.setdefault("SWITCHYARD_BIN", os.path.join(ROOT, ".build/release/switchyard"))
from harness import DemoBackend, Proxy, versions_json  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reloads", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    backend = DemoBackend("v1")
    directory = tempfile.mkdtemp(prefix="switchyard-reload-")
    proxy = Proxy(directory, [("v1", 50, [backend.address]), ("v2", 50, [backend.address])], workers=args.workers)
    latencies = []
    try:
        for index in range(args.reloads):
            share = 1 + index % 98
            temporary = os.path.join(directory, "versions.json.tmp")
            with open(temporary, "w") as f:
                f.write(versions_json([("v1", share, [backend.address]), ("v2", 100 - share, [backend.address])]))
            expected = proxy.status()["generation"] + 1
            renamed_at = time.monotonic_ns()
            os.rename(temporary, os.path.join(directory, "versions.json"))
            deadline = time.monotonic() + 5
            while True:
                workers = proxy.status()["workers"]
                if set(workers["applied_generation"]) == {expected}:
                    latencies.append((max(workers["applied_at_monotonic_ns"]) - renamed_at) / 1e6)
                    break
                if time.monotonic() > deadline:
                    sys.exit(f"reload {index} not applied within 5 s")
                time.sleep(0.001)
            time.sleep(0.02)
    finally:
        proxy.stop()
        backend.stop()
    print(f"reload latency over {len(latencies)} reloads, {args.workers} workers: "
          f"median {statistics.median(latencies):.2f} ms, p90 {sorted(latencies)[int(len(latencies) * 0.9)]:.2f} ms, "
          f"max {max(latencies):.2f} ms")


if __name__ == "__main__":
    main()
