#!/usr/bin/env python3
"""Heap allocations per keep-alive request, plain HTTP and HTTPS, over the whole proxy process
(Switchyard's code and OpenSSL's), counted by an LD_PRELOAD shim (count_malloc.c).

One keep-alive connection sends N requests; the count is (total for 2,500 requests − total for
500) / 2,000, which removes start-up, the handshake and shutdown. The 100 ms tick's own work
(copying counters out) lands in the difference too, so a few hundredths per request are the
tick, not the request. `make micro-bench` checks Switchyard's own request path at exactly 0.

    python3 Benchmarks/allocations/allocations_per_request.py [.build/release/switchyard]
"""
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "Tests", "integration"))
import harness  # noqa: E402


def total_allocations(binary, shim, directory, backend, requests, tls):
    count_file = os.path.join(directory, "count")
    config = {"listeners": [{"address": "127.0.0.1:0"},
                            {"address": "127.0.0.1:0", "tls": {"certificates": [{"cert_file": "cert.pem", "key_file": "cert.key"}]}}],
              "admin": {"address": "127.0.0.1:0"}, "workers": 1, "health_check": False,
              "versions_file": "versions.json", "auth": {"tokens_file": "tokens.txt"}}
    with open(os.path.join(directory, "switchyard.json"), "w") as f:
        json.dump(config, f)
    process = subprocess.Popen([binary, "serve", "--config", os.path.join(directory, "switchyard.json"), "--log-level", "error"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env=dict(os.environ, LD_PRELOAD=shim, COUNT_MALLOC_FILE=count_file))
    line = process.stdout.readline()
    ports = [int(port) for port in __import__("re").findall(r"127\.0\.0\.1:(\d+)", line)]
    port = ports[1] if tls else ports[0]
    sock = socket.create_connection(("127.0.0.1", port))
    if tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        sock = context.wrap_socket(sock, server_hostname="localhost")
    request = f"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {harness.TOKEN}\r\n\r\n".encode()
    stream = sock.makefile("rb")
    for _ in range(requests):
        sock.sendall(request)
        length = 0
        while (header := stream.readline()) not in (b"\r\n", b""):
            if header.lower().startswith(b"content-length:"):
                length = int(header.split(b":")[1])
        stream.read(length)
    sock.close()
    process.terminate()
    process.wait(timeout=30)
    with open(count_file) as f:
        return int(f.read())


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.abspath(".build/release/switchyard")
    directory = tempfile.mkdtemp(prefix="switchyard-allocations-")
    shim = os.path.join(directory, "count_malloc.so")
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", shim, os.path.join(HERE, "count_malloc.c"), "-ldl"], check=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", os.path.join(directory, "cert.key"),
                    "-out", os.path.join(directory, "cert.pem")], check=True, capture_output=True)
    with open(os.path.join(directory, "tokens.txt"), "w") as f:
        f.write(harness.TOKEN + "\n")
    backend = harness.RecordingBackend("v1")
    backend.requests = _Discard()
    with open(os.path.join(directory, "versions.json"), "w") as f:
        f.write(harness.versions_json([("v1", 100, [backend.address])]))
    try:
        for tls in (False, True):
            low = total_allocations(binary, shim, directory, backend, 500, tls)
            high = total_allocations(binary, shim, directory, backend, 2500, tls)
            print(f"{'HTTPS' if tls else 'HTTP '} keep-alive: {(high - low) / 2000:.2f} allocations per request "
                  f"(whole process; {low} for 500 requests, {high} for 2,500)")
    finally:
        backend.stop()


class _Discard(list):
    """The recording backend's request list, kept empty: the run sends thousands."""

    def append(self, item):
        pass


if __name__ == "__main__":
    main()
