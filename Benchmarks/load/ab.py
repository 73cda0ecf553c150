#!/usr/bin/env python3
"""A/B two Switchyard builds against the same nginx backend in one run: interleaved rounds,
medians of throughput and of user/system CPU per request. For judging a change to the
request path on a noisy machine.

    cp .build/release/switchyard /tmp/switchyard-before   # then change, rebuild
    python3 Benchmarks/load/ab.py /tmp/switchyard-before .build/release/switchyard [--rounds 6]
"""
import argparse
import os
import shutil
import statistics
import tempfile

import bench


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--duration", type=int, default=3)
    parser.add_argument("--path", default="/")
    args = parser.parse_args()
    bench.raise_fd_limit()
    directory = tempfile.mkdtemp(prefix="switchyard-ab-")
    ports = {"V1": bench.free_port(), "V2": bench.free_port(), "DIR": directory, "TOKEN": bench.TOKEN}
    with open(os.path.join(directory, "16k.bin"), "wb") as f:
        f.write(b"x" * 16384)
    with open(os.path.join(directory, "tokens.txt"), "w") as f:
        f.write(bench.TOKEN + "\n")
    bench.make_certificate(directory)
    started = []
    try:
        started.append(bench.Target("backend", ["nginx", "-c", bench.render("backend.nginx.conf", directory, ports),
                                                "-p", directory], ports["V1"], directory))
        targets = []
        for name, binary in (("A", args.a), ("B", args.b)):
            values = dict(ports, PORT=bench.free_port(), ADMIN=bench.free_port(), TLSPORT=bench.free_port())
            bench.render("versions.json", directory, values)
            config = bench.render("switchyard.json", directory, values)
            target = bench.Target(name, [binary, "serve", "--config", config, "--log-level", "warning"],
                                  values["PORT"], directory)
            target.baseline_rss_kib = target.rss_kib()
            targets.append(target)
            started.append(target)
        results = {target.name: [] for target in targets}
        for _ in range(args.rounds):
            for target in targets:
                results[target.name].append(bench.measure(target, args.path, 64, args.duration))
        for name, binary in (("A", args.a), ("B", args.b)):
            runs = results[name]
            print(f"{name} {binary}: {statistics.median(r['rps'] for r in runs):,.0f} req/s, "
                  f"user {statistics.median(r['user_us'] for r in runs):.2f} µs/req, "
                  f"sys {statistics.median(r['sys_us'] for r in runs):.2f} µs/req")
    finally:
        for target in reversed(started):
            target.stop()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
