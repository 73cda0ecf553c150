#!/usr/bin/env python3
"""What active health checking costs the request path: one Switchyard binary, two configs,
interleaved rounds against the same nginx backend (as `Benchmarks/load/ab.py` does for two
binaries).

    A: health checks off.
    B: 10 versions × 10 endpoints probed every second (v1, 100 % of the traffic, on the nginx
       backend; nine dark versions whose ten endpoints each are small health servers), so the
       health thread runs 91 probes a second while the worker serves wrk.

It prints req/s, the worker thread's own CPU per request (what the request path pays) and the
whole process's (the health thread included). On a 2-core machine the 91 connects a second
and the health servers also take CPU from wrk and nginx, so req/s moves more than the
worker's CPU per request does.

    python3 Benchmarks/health/health_cost.py [.build/release/switchyard] [--rounds 6]
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "load"))
import bench  # noqa: E402

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nsuccess"


def health_servers(count):
    """`count` listening sockets answering every connection with 200 and closing it."""
    sockets = []
    for _ in range(count):
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        sockets.append(server)

    def serve(server):
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.recv(4096)
                    conn.sendall(ANSWER)
                except OSError:
                    pass

    for server in sockets:
        threading.Thread(target=serve, args=(server,), daemon=True).start()
    return sockets


def worker_cpu_seconds(pid):
    """User + system CPU of the worker threads only (named `worker-N`), from /proc."""
    total = 0
    ticks = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if not f.read().startswith("worker-"):
                    continue
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except OSError:
            pass
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("binary", nargs="?", default=bench.BINARY)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--duration", type=int, default=3)
    args = parser.parse_args()
    bench.raise_fd_limit()
    directory = tempfile.mkdtemp(prefix="switchyard-health-")
    ports = {"V1": bench.free_port(), "V2": bench.free_port(), "DIR": directory, "TOKEN": bench.TOKEN}
    with open(os.path.join(directory, "tokens.txt"), "w") as f:
        f.write(bench.TOKEN + "\n")
    servers = health_servers(90)
    check = {"path": "/-/healthz", "interval_ms": 1000, "timeout_ms": 500}
    versions = {
        "A": [{"name": "v1", "traffic_percent": 100, "endpoints": [f"127.0.0.1:{ports['V1']}"], "health_check": False}],
        "B": [{"name": "v1", "traffic_percent": 100, "endpoints": [f"127.0.0.1:{ports['V1']}"], "health_check": check}] + [
            {"name": f"dark{index}", "traffic_percent": 0, "health_check": check,
             "endpoints": [f"127.0.0.1:{server.getsockname()[1]}" for server in servers[index * 10:(index + 1) * 10]]}
            for index in range(9)],
    }
    started = []
    try:
        started.append(bench.Target("backend", ["nginx", "-c", bench.render("backend.nginx.conf", directory, ports),
                                                "-p", directory], ports["V1"], directory))
        targets = []
        for name in ("A", "B"):
            subdirectory = os.path.join(directory, name)
            os.mkdir(subdirectory)
            shutil.copy(os.path.join(directory, "tokens.txt"), subdirectory)
            port = bench.free_port()
            with open(os.path.join(subdirectory, "versions.json"), "w") as f:
                json.dump({"service": "bench", "versions": versions[name]}, f)
            with open(os.path.join(subdirectory, "switchyard.json"), "w") as f:
                json.dump({"listeners": [{"address": f"127.0.0.1:{port}"}],
                           "admin": {"address": f"127.0.0.1:{bench.free_port()}"}, "workers": 1,
                           "auth": {"tokens_file": "tokens.txt"}}, f)
            target = bench.Target(name, [args.binary, "serve", "--config", os.path.join(subdirectory, "switchyard.json"),
                                         "--log-level", "warning"], port, subdirectory)
            target.baseline_rss_kib = target.rss_kib()
            targets.append(target)
            started.append(target)
        results = {target.name: [] for target in targets}
        for _ in range(args.rounds):
            for target in targets:
                before = worker_cpu_seconds(target.process.pid)
                result = bench.measure(target, "/", 64, args.duration)
                result["worker_us"] = (worker_cpu_seconds(target.process.pid) - before) * 1e6 / max(result["requests"], 1)
                results[target.name].append(result)
        for name, what in (("A", "health checks off"), ("B", "91 endpoints probed every second")):
            runs = results[name]
            print(f"{name} {what}: {statistics.median(r['rps'] for r in runs):,.0f} req/s; "
                  f"worker thread {statistics.median(r['worker_us'] for r in runs):.2f} µs CPU/req; "
                  f"whole process user {statistics.median(r['user_us'] for r in runs):.2f} + "
                  f"sys {statistics.median(r['sys_us'] for r in runs):.2f} µs/req")
    finally:
        for target in reversed(started):
            target.stop()
        for server in servers:
            server.close()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
