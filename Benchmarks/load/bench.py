#!/usr/bin/env python3
"""Load comparison: Switchyard against HAProxy and nginx doing the same job, side by side.

One nginx backend serves two versions. Each proxy checks the Bearer token, honours
X-ANYSCALE-VERSION, splits 30/70 and keeps upstream connections alive, with one worker or
thread. wrk runs the proxies in interleaved rounds (A B C A B C ...) so that the machine's
noise spreads over all of them; figures are medians over rounds, and ratios compare them.

    python3 Benchmarks/load/bench.py [--rounds 5] [--duration 5] [--quick] [--update-docs]
"""
import argparse
import os
import re
import resource
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BINARY = os.environ.get("SWITCHYARD_BIN", os.path.join(ROOT, ".build/release/switchyard"))
TOKEN = "bench-token"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def render(template, directory, values):
    with open(os.path.join(HERE, template)) as f:
        text = f.read()
    for key, value in values.items():
        text = text.replace("{" + key + "}", str(value))
    path = os.path.join(directory, template)
    with open(path, "w") as f:
        f.write(text)
    return path


def make_certificate(directory):
    """The ECDSA P-256 certificate every proxy serves TLS with: bench.pem and bench.key, and
    both in bench-combined.pem for HAProxy."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", "/CN=localhost", "-keyout", os.path.join(directory, "bench.key"),
                    "-out", os.path.join(directory, "bench.pem")], check=True, capture_output=True)
    with open(os.path.join(directory, "bench-combined.pem"), "w") as f:
        f.write(open(os.path.join(directory, "bench.pem")).read() + open(os.path.join(directory, "bench.key")).read())


def wait_for_port(port, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Target:
    """A process serving HTTP on `port`, measured through /proc."""

    def __init__(self, name, command, port, directory):
        self.name, self.port, self.directory = name, port, directory
        self.log = open(os.path.join(directory, f"{name}.log"), "w")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=raise_fd_limit)
        wait_for_port(port)

    def cpu_seconds(self):
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS

    def rss_kib(self):
        with open(f"/proc/{self.process.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def run_wrk(port, path, connections, duration, close=False, scheme="http"):
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s",
               "-H", f"Authorization: Bearer {TOKEN}"]
    if close:
        command += ["-H", "Connection: close"]
    output = subprocess.run(command + [f"{scheme}://127.0.0.1:{port}{path}"], capture_output=True, text=True,
                            preexec_fn=raise_fd_limit).stdout
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    errors = re.search(r"Socket errors: (.*)", output)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "requests": requests,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50": parse_latency(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1)),
        "p99": parse_latency(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1)),
        "errors": (errors.group(1) if errors else "") + (f" non-2xx {non2xx.group(1)}" if non2xx else ""),
    }


FULL_HANDSHAKES = "full"
# h2c with prior knowledge: h2load to the target's HTTP/2 port, HTTP/1.1 to the backend.
H2C = "h2c"
# gRPC unary calls: h2load with a gRPC body to the target's HTTP/2 port, h2c to the backend's
# gRPC endpoints.
GRPC = "grpc"
# The call's body, in the run's directory: one gRPC message of 5 bytes.
GRPC_BODY = "call.bin"


def run_h2load(port, path, connections, streams, duration, grpc_body=None):
    """h2load, one thread: `connections` h2c connections with `streams` requests in flight on
    each; with `grpc_body` (a file), gRPC calls: POSTs of it as `application/grpc`."""
    grpc = ["-d", grpc_body, "-H", "content-type: application/grpc", "-H", "te: trailers"] if grpc_body else []
    output = subprocess.run(["h2load", "-t1", f"-c{connections}", f"-m{streams}", f"-D{duration}", *grpc,
                             "-H", f"Authorization: Bearer {TOKEN}", f"http://127.0.0.1:{port}{path}"],
                            capture_output=True, text=True, preexec_fn=raise_fd_limit).stdout
    counts = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", output)
    status = re.search(r"status codes: (\d+) 2xx", output)
    failed = int(counts.group(4)) + int(counts.group(5))
    # A call still in flight when the run ends can be counted as done without its status.
    non2xx = max(int(counts.group(3)) - int(status.group(1)), 0)
    return {
        "requests": int(counts.group(2)),
        "rps": float(re.search(r"finished in [\d.]+s, ([\d.]+) req/s", output).group(1)),
        # h2load reports no percentiles.
        "p50": 0.0, "p99": 0.0,
        "errors": (f"failed {failed}" if failed else "") + (f" non-2xx {non2xx}" if non2xx else ""),
    }


def run_s_time(port, path, duration):
    """`openssl s_time -new`: full handshakes one after another, each with a request."""
    started = time.monotonic()
    output = subprocess.run(["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", str(duration),
                             "-www", path], capture_output=True, text=True).stdout
    elapsed = time.monotonic() - started
    connections = int(re.search(r"(\d+) connections in [\d.]+ real seconds", output).group(1))
    return {"requests": connections, "rps": connections / elapsed, "p50": 0.0, "p99": 0.0, "errors": ""}


def parse_latency(text):
    """wrk prints 812.00us, 1.23ms or 2.00s; returns milliseconds."""
    number, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def measure(target, path, connections, duration, close=False, tls=False):
    """One wrk run against `target`: CPU time per request and peak RSS over the run."""
    peak = [target.rss_kib()]
    done = threading.Event()

    def sample_rss():
        while not done.wait(0.2):
            peak[0] = max(peak[0], target.rss_kib())

    sampler = threading.Thread(target=sample_rss)
    sampler.start()
    user0, system0 = target.cpu_seconds()
    if tls == FULL_HANDSHAKES:
        result = run_s_time(target.tls_port, path, duration)
    elif tls == H2C:
        result = run_h2load(target.h2_port, path, connections, close, duration)
    elif tls == GRPC:
        result = run_h2load(target.h2_port, path, connections, close, duration, grpc_body=os.path.join(target.directory, GRPC_BODY))
    else:
        result = run_wrk(target.tls_port if tls else target.port, path, connections, duration, close, "https" if tls else "http")
    user1, system1 = target.cpu_seconds()
    done.set()
    sampler.join()
    result["user_us"] = (user1 - user0) * 1e6 / max(result["requests"], 1)
    result["sys_us"] = (system1 - system0) * 1e6 / max(result["requests"], 1)
    result["rss_kib"] = peak[0]
    # Memory per connection: the peak over the run against the process's size at start.
    result["rss_per_conn_kib"] = max(peak[0] - target.baseline_rss_kib, 0) / connections
    return result


def idle_connection_kib(target, count, tls=False):
    """Opens `count` keep-alive connections one after another, each completing one request and
    then staying open and idle; returns the target's RSS growth per connection."""
    before = target.rss_kib()
    request = f"GET / HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    sockets = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", target.tls_port if tls else target.port), timeout=10)
            if tls:
                sock = context.wrap_socket(sock, server_hostname="localhost")
            sock.sendall(request)
            received = b""
            while b"\r\n\r\n" not in received:
                received += sock.recv(65536)
            sockets.append(sock)
        time.sleep(1)
        return (target.rss_kib() - before) / count
    finally:
        for sock in sockets:
            sock.close()


def idle_h2_connection_kib(target, count):
    """The same for HTTP/2 (h2c): each connection sends the preface, SETTINGS and one request,
    reads its response, then stays open and idle."""
    from hpack import Encoder
    settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    block = Encoder().encode([(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "bench"),
                              ("authorization", f"Bearer {TOKEN}")])
    headers = len(block).to_bytes(3, "big") + b"\x01\x05\x00\x00\x00\x01" + block  # END_STREAM | END_HEADERS, stream 1
    hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + settings + headers
    before = target.rss_kib()
    sockets = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", target.h2_port), timeout=10)
            sock.sendall(hello)
            received = b""
            while not _h2_stream_ended(received):
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError(f"{target.name} closed an HTTP/2 connection")
                received += chunk
            sockets.append(sock)
        time.sleep(1)
        return (target.rss_kib() - before) / count
    finally:
        for sock in sockets:
            sock.close()


def _h2_stream_ended(data):
    """Whether `data` (frames from a server) holds a frame ending stream 1."""
    offset = 0
    while offset + 9 <= len(data):
        length = int.from_bytes(data[offset:offset + 3], "big")
        kind, flags, stream = data[offset + 3], data[offset + 4], int.from_bytes(data[offset + 5:offset + 9], "big")
        if kind in (0x0, 0x1) and stream == 1 and flags & 0x1:
            return True
        offset += 9 + length
    return False


def syscalls_per_request(target, path, connections, close=False, seconds=2, tls=False):
    """A separate short run under `strace -c`: total syscalls of the target / requests served."""
    tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(target.process.pid), "-o", "/dev/stdout"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(0.5)
    result = run_wrk(target.tls_port if tls else target.port, path, connections, seconds, close, "https" if tls else "http")
    tracer.terminate()
    summary = tracer.communicate(timeout=20)[0]
    total = re.search(r"^\s*100\.00\s+\S+\s+\S+\s+(\d+)", summary, re.M)
    if total is None:
        return None
    return int(total.group(1)) / max(result["requests"], 1)


OPERATED = "switchyard + access log + health checks"

SCENARIOS = [
    # name, path, connections, close per request (for h2c: streams per connection), TLS (the
    # same ECDSA P-256 certificate for all) or h2c
    ("small response, keep-alive, 64 connections", "/", 64, False, False),
    ("16 KiB response, keep-alive, 64 connections", "/16k", 64, False, False),
    ("new connection per request, 64 clients", "/", 64, True, False),
    ("1,000 keep-alive connections", "/", 1000, False, False),
    # 9,000, not 10,000: a proxy holds a client and a backend socket per busy connection, and the
    # hard descriptor limit on this machine is 20,000 per process.
    ("9,000 keep-alive connections", "/", 9000, False, False),
    ("TLS, small response, keep-alive, 64 connections", "/", 64, False, True),
    # wrk resumes the session on every reconnect after the first (TLS 1.3 tickets).
    ("TLS, new connection per request (session resumed), 64 clients", "/", 64, True, True),
    # `openssl s_time -new`: one client, a full handshake per connection, answered 401 (no token).
    ("TLS, full handshake per connection, one client", "/", 1, True, FULL_HANDSHAKES),
    ("HTTP/2 (h2c), small response, 64 connections × 10 streams", "/", 64, 10, H2C),
    ("HTTP/2 (h2c), small response, 64 connections × 1 stream", "/", 64, 1, H2C),
    ("gRPC unary calls (h2c to the proxy and to the gRPC endpoints), 64 connections × 10 streams",
     "/bench.Echo/Unary", 64, 10, GRPC),
]


def start_targets(directory, ports, targets):
    """Starts Switchyard (plain and operated), HAProxy and nginx, each on ports of its own,
    into `targets` (so that the caller stops the ones started if one fails)."""
    values = dict(ports, PORT=free_port(), ADMIN=free_port(), TLSPORT=free_port())
    render("versions.json", directory, values)
    targets.append(Target("switchyard", [BINARY, "serve", "--config", render("switchyard.json", directory, values),
                                         "--log-level", "warning"], values["PORT"], directory))
    targets[-1].tls_port = values["TLSPORT"]
    targets[-1].h2_port = values["PORT"]  # h2c and HTTP/1.1 share the port
    # The same with what production runs: health checks (Ray Serve's defaults) and the
    # access log writing every request to a file. /metrics is always on.
    values = dict(ports, PORT=free_port(), ADMIN=free_port(), TLSPORT=free_port())
    targets.append(Target(OPERATED, [BINARY, "serve", "--config", render("switchyard-operated.json", directory, values),
                                     "--log-level", "warning"], values["PORT"], directory))
    targets[-1].tls_port = values["TLSPORT"]
    targets[-1].h2_port = values["PORT"]
    values = dict(ports, PORT=free_port(), TLSPORT=free_port(), H2PORT=free_port())
    targets.append(Target("haproxy", ["haproxy", "-db", "-f", render("haproxy.cfg", directory, values)],
                          values["PORT"], directory))
    targets[-1].tls_port = values["TLSPORT"]
    targets[-1].h2_port = values["H2PORT"]
    values = dict(ports, PORT=free_port(), TLSPORT=free_port(), H2PORT=free_port())
    targets.append(Target("nginx", ["nginx", "-c", render("nginx.conf", directory, values), "-p", directory],
                          values["PORT"], directory))
    targets[-1].tls_port = values["TLSPORT"]
    targets[-1].h2_port = values["H2PORT"]


def ratio(value, reference):
    return f"{value / reference:.2f}" if reference > 0 else "–"


IDLE_MEASUREMENTS = [
    ("Memory per idle keep-alive connection (5,000 connections opened one after another, one request each)",
     lambda target: idle_connection_kib(target, 5000)),
    ("Memory per idle TLS keep-alive connection (2,000 connections, one request each)",
     lambda target: idle_connection_kib(target, 2000, tls=True)),
    ("Memory per idle HTTP/2 (h2c) connection (2,000 connections, one request each)",
     lambda target: idle_h2_connection_kib(target, 2000)),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--quick", action="store_true", help="first scenario only, 3 rounds of 3 s")
    parser.add_argument("--scenario", help="run only scenarios whose name contains this text")
    parser.add_argument("--idle", action="store_true", help="measure idle-connection memory even with --quick/--scenario")
    parser.add_argument("--no-strace", action="store_true")
    parser.add_argument("--update-docs", action="store_true", help="put the table into docs/performance.md")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration = 3, 3
    scenarios = SCENARIOS[:1] if args.quick else SCENARIOS
    if args.scenario:
        scenarios = [s for s in SCENARIOS if args.scenario in s[0]]
    for tool in ("nginx", "haproxy", "wrk", "h2load", "strace"):
        if shutil.which(tool) is None and not (tool == "strace" and args.no_strace):
            sys.exit(f"{tool} is missing: run `make bench`, which installs it")
    raise_fd_limit()

    directory = tempfile.mkdtemp(prefix="switchyard-bench-")
    ports = {"V1": free_port(), "V2": free_port(), "G1": free_port(), "G2": free_port(), "DIR": directory, "TOKEN": TOKEN}
    with open(os.path.join(directory, "16k.bin"), "wb") as f:
        f.write(b"x" * 16384)
    with open(os.path.join(directory, GRPC_BODY), "wb") as f:
        f.write(b"\0\0\0\0\x05hello")
    with open(os.path.join(directory, "tokens.txt"), "w") as f:
        f.write(TOKEN + "\n")
    make_certificate(directory)
    targets = []
    try:
        backend = Target("backend", ["nginx", "-c", render("backend.nginx.conf", directory, ports), "-p", directory],
                         ports["V1"], directory)
        backend_only = Target.__new__(Target)
        backend_only.name, backend_only.port, backend_only.process = "backend alone", ports["V1"], backend.process
        start_targets(directory, ports, targets)
        for target in targets:  # every proxy must do the job before it is timed
            check = run_wrk(target.port, "/", 4, 1)
            assert not check["errors"], f"{target.name}: {check['errors']}"
            target.baseline_rss_kib = target.rss_kib()
        backend_only.baseline_rss_kib = backend.rss_kib()

        report = [f"Switchyard against HAProxy {tool_version('haproxy')} and nginx {tool_version('nginx')}: "
                  f"one worker/thread each, wrk -t1, medians of {args.rounds} interleaved rounds of {args.duration} s "
                  f"({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores).", ""]
        if args.idle or not (args.quick or args.scenario):
            # Each kind on fresh processes: memory freed by the connections of an earlier
            # measurement would be reused and hide the next one's.
            for title, measure_idle in IDLE_MEASUREMENTS:
                fresh = []
                try:
                    start_targets(directory, ports, fresh)
                    idle = {target.name: measure_idle(target) for target in fresh}
                finally:
                    for target in reversed(fresh):
                        target.stop()
                report += [f"### {title}", "", "| | KiB per connection | vs HAProxy | vs nginx |", "|---|---:|---:|---:|"]
                report += [f"| {name} | {kib:.1f} | {ratio(kib, idle['haproxy'])} | {ratio(kib, idle['nginx'])} |"
                           for name, kib in idle.items()] + [""]
        for name, path, connections, close, tls in scenarios:
            print(f"== {name}", file=sys.stderr)
            measured = targets if tls else targets + [backend_only]  # the backend speaks plain HTTP/1.1 only
            runs = {t.name: [] for t in measured}
            for round_index in range(args.rounds):
                for target in measured:
                    result = measure(target, path, connections, args.duration, close, tls)
                    runs[target.name].append(result)
                    print(f"   round {round_index + 1} {target.name:13} {result['rps']:>10.0f} req/s "
                          f"p99 {result['p99']:.2f} ms {result['errors']}", file=sys.stderr)
            syscalls = {}
            if not args.no_strace and tls not in (FULL_HANDSHAKES, H2C, GRPC):
                for target in targets:
                    syscalls[target.name] = syscalls_per_request(target, path, min(connections, 64), close, tls=tls)
            report += table(name, runs, syscalls, connections)
        text = "\n".join(report)
        print(text)
        if not (args.quick or args.scenario):  # partial runs do not replace the recorded results
            with open(os.path.join(HERE, "RESULTS.md"), "w") as f:
                f.write(f"# Load comparison\n\nMade by `make bench` (`python3 Benchmarks/load/bench.py`).\n\n{text}\n")
            if args.update_docs:
                update_docs(text)
    finally:
        for target in reversed(targets):
            target.stop()
        if "backend" in locals():
            backend.stop()
        shutil.rmtree(directory, ignore_errors=True)


def tool_version(tool):
    output = subprocess.run([tool, "-v"], capture_output=True, text=True)
    match = re.search(r"(\d+\.\d+\.\d+)", output.stdout + output.stderr)
    return match.group(1) if match else "?"


def table(name, runs, syscalls, connections):
    median = {target: {key: statistics.median(r[key] for r in results) for key in
                       ("rps", "p50", "p99", "user_us", "sys_us", "rss_kib", "rss_per_conn_kib")}
              for target, results in runs.items()}
    haproxy, nginx = median["haproxy"], median["nginx"]
    lines = [f"### {name}", "",
             "| | req/s | p50 ms | p99 ms | user µs/req | sys µs/req | syscalls/req | peak RSS MiB | RSS/conn KiB "
             "| req/s vs HAProxy | req/s vs nginx | user CPU vs HAProxy |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for target, m in median.items():
        proxy = target != "backend alone"
        lines.append(
            f"| {target} | {m['rps']:,.0f} | "
            + (f"{m['p50']:.2f} | {m['p99']:.2f} | " if m["p99"] else "– | – | ")
            + (f"{m['user_us']:.2f} | {m['sys_us']:.2f} | " if proxy else "– | – | ")
            + (f"{syscalls[target]:.2f} | " if syscalls.get(target) else "– | ")
            # Per connection only where connections dominate memory (not buffer pools and arenas).
            + (f"{m['rss_kib'] / 1024:.1f} | " if proxy else "– | ")
            + (f"{m['rss_per_conn_kib']:.1f} | " if proxy and connections >= 1000 else "– | ")
            + f"{m['rps'] / haproxy['rps']:.2f} | {m['rps'] / nginx['rps']:.2f} | "
            + (f"{m['user_us'] / haproxy['user_us']:.2f} |" if proxy and haproxy["user_us"] else "– |"))
    if OPERATED in median:
        lines.append(f"\nWith the access log and health checks on, Switchyard keeps "
                     f"{median[OPERATED]['rps'] / median['switchyard']['rps']:.0%} of its req/s.")
    errors = {t: [r["errors"] for r in results if r["errors"]] for t, results in runs.items()}
    for target, messages in errors.items():
        if messages:
            lines.append(f"\n{target} errors: {'; '.join(messages)}")
    return lines + [""]


def update_docs(text):
    path = os.path.join(ROOT, "docs", "performance.md")
    with open(path) as f:
        readme = f.read()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start not in readme:
        return
    before, rest = readme.split(start, 1)
    after = rest.split(end, 1)[1]
    with open(path, "w") as f:
        f.write(f"{before}{start}\n{text}\n{end}{after}")


if __name__ == "__main__":
    main()
