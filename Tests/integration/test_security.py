"""Attacks through the real proxy: request smuggling, memory exhaustion, descriptor exhaustion,
hostile backends, hostile config files, upgrades that would skip authentication."""
import http.client
import json
import os
import resource
import signal
import socket
import subprocess
import threading
import time

import pytest

from harness import (MEASURES_MEMORY, SANITIZED, TOKEN, ChunkedRequestRecorder, ThreadedSocketServer, UvicornBackend, auth, http_get, open_websocket,
                     raw_exchange, read_head, rss_kib, wait_until)

AUTH = f"Authorization: Bearer {TOKEN}\r\n"
SMUGGLED = b"GET /slow-smuggled HTTP/1.1\r\nHost: internal\r\n\r\n"


def status_of(response):
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else None


def chunked_post(body, path="/legit"):
    return f"POST {path} HTTP/1.1\r\nHost: a\r\n{AUTH}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode() + body


# Each one is framed differently by a lenient and a strict reader; the bytes after the point
# where they disagree are a second request.
SMUGGLING_BODIES = [
    b"5\r\nhello\r\n0\r\n\n" + SMUGGLED,  # bare LF where the trailer section begins
    b"5\nhello\r\n0\r\n\r\n" + SMUGGLED,  # bare LF after the chunk size
    b"5\r\nhello\n0\r\n\r\n" + SMUGGLED,  # bare LF after chunk data
    b"5 \r\nhello\r\n0\r\n\r\n" + SMUGGLED,  # whitespace after the size
    b" 5\r\nhello\r\n0\r\n\r\n" + SMUGGLED,  # whitespace before the size
    b"5;a\nhello\r\n0\r\n\r\n" + SMUGGLED,  # bare LF in an extension
    b"5;a=\"x\r\n0\r\n\r\n" + SMUGGLED + b"\"\r\nhello\r\n0\r\n\r\n",  # CRLF inside a quoted extension
    b"5\r\nhello\r\n0\r\nX: y\n" + SMUGGLED,  # bare LF after a trailer field
    b"5\r\nhello\r\n0\r\nX: y\r\n\n" + SMUGGLED,
    b"0x5\r\nhello\r\n0\r\n\r\n" + SMUGGLED,
    b"+5\r\nhello\r\n0\r\n\r\n" + SMUGGLED,
    b"10000000000000005\r\nhello\r\n0\r\n\r\n" + SMUGGLED,  # size overflow
    b"5\r\nhello\r\n0\r\nX: y\r\n folded\r\n\r\n" + SMUGGLED,  # obs-fold in a trailer
]


def test_chunked_smuggling_reaches_no_backend_and_poisons_no_response(proxy, started):
    backend = UvicornBackend()
    started.append(backend)
    server = proxy([("v1", 100, [backend.address])])
    stop_at = time.monotonic() + 5
    poisoned, served, failures = [], [0], []

    def victim(index):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        n = 0
        while time.monotonic() < stop_at:
            path = f"/victim-{index}-{n}"
            try:
                connection.request("GET", path, headers=auth())
                response = connection.getresponse()
                body = json.loads(response.read())
            except Exception as error:  # a victim must never see a broken connection either
                failures.append(repr(error))
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
                continue
            if body.get("path") != path:
                poisoned.append((path, body))
            served[0] += 1
            n += 1
        connection.close()

    victims = [threading.Thread(target=victim, args=(i,)) for i in range(8)]
    for thread in victims:
        thread.start()
    rounds = 0
    while time.monotonic() < stop_at:
        for body in SMUGGLING_BODIES:
            response = raw_exchange(server.port, chunked_post(body))
            assert status_of(response) == 400, (body, response[:300])
        rounds += 1
    for thread in victims:
        thread.join()
    assert rounds > 0 and served[0] > 100
    assert poisoned == [] and failures == []
    paths = [request["path"] for request in backend.requests()]
    assert "/slow-smuggled" not in paths
    assert all(path.startswith("/victim-") for path in paths), set(paths)


def test_chunked_body_reaches_the_backend_canonical(started, proxy):
    backend = ChunkedRequestRecorder()
    received = backend.received
    started.append(backend)
    server = proxy([("v1", 100, [backend.address])])
    body = b"5;name=\"quoted;value\"\r\nhello\r\n006 ; x = y\r\n world\r\n0;last\r\nX-Checksum: abc\r\n\r\n"
    response = raw_exchange(server.port, chunked_post(body))
    assert status_of(response) == 200
    head, forwarded = received[0].split(b"\r\n\r\n", 1)
    assert canonical_chunks(forwarded) == (b"hello world", b"X-Checksum: abc\r\n")


def canonical_chunks(data):
    """Decodes a chunked body that must be in the proxy's canonical form: lowercase hex sizes
    without leading zeros or extensions. Returns (data, trailer lines)."""
    body = b""
    while True:
        line, data = data.split(b"\r\n", 1)
        assert line == b"%x" % int(line, 16), f"not canonical: {line!r}"
        size = int(line, 16)
        if size == 0:
            assert data.endswith(b"\r\n")
            return body, data[:-2]
        body, separator, data = body + data[:size], data[size:size + 2], data[size + 2:]
        assert separator == b"\r\n"


class ScriptedBackend(ThreadedSocketServer):
    """Reads one request head per connection and answers with fixed bytes."""

    def __init__(self, answer, keep_sending=None):
        self.answer = answer
        self.keep_sending = keep_sending
        super().__init__()

    def serve(self, conn):
        while read_head(conn):
            conn.sendall(self.answer)
            if self.keep_sending:
                while True:
                    conn.sendall(self.keep_sending)


def test_malformed_chunked_response_becomes_502_when_nothing_was_sent(started, proxy):
    backend = ScriptedBackend(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\nX-Injected: 1\r\n\r\n")
    started.append(backend)
    server = proxy([("v1", 100, [backend.address])])
    response = raw_exchange(server.port, f"GET / HTTP/1.1\r\nHost: a\r\n{AUTH}Connection: close\r\n\r\n".encode())
    assert status_of(response) == 502, response
    assert b"X-Injected" not in response and b"hello" not in response
    assert json.loads(response.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "upstream_protocol_error"


@pytest.mark.parametrize("te, expected", [
    ("TE: trailers\r\n", b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n"),
    ("", b"5\r\nhello\r\n0\r\n\r\n"),
])
def test_chunked_response_is_reencoded_with_trailers_only_when_asked(started, proxy, te, expected):
    backend = ScriptedBackend(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                              b"5;ext=\"1\"\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n")
    started.append(backend)
    server = proxy([("v1", 100, [backend.address])])
    response = raw_exchange(server.port, f"GET / HTTP/1.1\r\nHost: a\r\n{AUTH}{te}Connection: close\r\n\r\n".encode())
    assert status_of(response) == 200
    assert response.split(b"\r\n\r\n", 1)[1] == expected


def test_bytes_after_a_response_never_reach_the_next_client(started, proxy):
    unsolicited = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned"
    backend = ScriptedBackend(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst" + unsolicited)
    started.append(backend)
    server = proxy([("v1", 100, [backend.address])], workers=1)
    for _ in range(5):
        status, _, body = http_get(server.port, "/", auth())
        assert (status, body) == (200, b"first")
    assert backend.connections == 5, "a connection that sent more than its response must not be reused"


def test_backend_bytes_while_idle_close_the_pooled_connection(started, proxy):
    class Chatty(ThreadedSocketServer):
        def serve(self, conn):
            read_head(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
            time.sleep(0.3)  # idle in the pool now
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned")
            time.sleep(2)

    backend = Chatty()
    started.append(backend)
    server = proxy([("v1", 100, [backend.address])], workers=1)
    assert http_get(server.port, "/", auth())[2] == b"first"
    time.sleep(0.6)
    assert http_get(server.port, "/", auth())[2] == b"first"
    assert backend.connections == 2


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("request_bytes, closes", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True),  # no token: 401, then the connection closes
    (f"GET / HTTP/1.1\r\nHost: x\r\n{AUTH}X-ANYSCALE-VERSION: nope\r\n\r\n".encode(), False),  # 404, keep-alive
])
def test_pipelined_flood_without_reading_stays_bounded(demo, proxy, request_bytes, closes):
    backend = demo("v1")
    server = proxy([("v1", 100, [backend.address])])
    before = rss_kib(server.process.pid)
    flood = request_bytes * 2000
    sent, closed = 0, False
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        stop_at = time.monotonic() + 5
        while time.monotonic() < stop_at:
            try:
                sent += sock.send(flood)
            except BlockingIOError:
                time.sleep(0.01)
            except OSError:
                closed = True  # the proxy closed it (after the 401)
                break
        # Another client is served meanwhile.
        assert http_get(server.port, "/", auth())[0] == 200
        grown = rss_kib(server.process.pid) - before
    # Answers are written one at a time, each only after the previous one left: a client that
    # does not read holds one answer in the proxy, not millions.
    assert grown < 8 * 1024 or not MEASURES_MEMORY, f"proxy grew by {grown} KiB"
    assert sent > 0 and closed == closes


def test_sigterm_under_load_drains_cleanly_ten_times(demo, proxy, tmp_path):
    backend = demo("v1")
    for attempt in range(10):
        server = proxy([("v1", 100, [backend.address])])
        url = f"http://127.0.0.1:{server.port}/"
        wrk = subprocess.Popen(["wrk", "-t2", "-c64", "-d10s", "-H", f"Authorization: Bearer {TOKEN}", url],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stop = threading.Event()

        def connector():
            while not stop.is_set():
                try:
                    raw_exchange(server.port, f"GET / HTTP/1.1\r\nHost: a\r\n{AUTH}Connection: close\r\n\r\n".encode(), timeout=2)
                except OSError:
                    pass

        connectors = [threading.Thread(target=connector) for _ in range(4)]
        for thread in connectors:
            thread.start()
        stream = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        time.sleep(0.5)
        stream.sendall(f"GET /stream?chunks=5&interval_ms=200 HTTP/1.1\r\nHost: a\r\n{AUTH}\r\n".encode())
        received = stream.recv(65536)
        server.process.send_signal(signal.SIGTERM)
        while not received.endswith(b"0\r\n\r\n"):
            chunk = stream.recv(65536)
            if not chunk:
                break
            received += chunk
        stream.close()
        code = server.process.wait(timeout=20)
        stop.set()
        for thread in connectors:
            thread.join()
        wrk.kill()
        wrk.wait()
        assert code == 0, f"attempt {attempt}: exit {code}: {server.log()[-2000:]}"
        assert received.count(b"data: ") == 5, f"attempt {attempt}: the stream in flight was cut: {received[-200:]!r}"


def test_descriptor_exhaustion_does_not_spin_and_recovers(demo, proxy):
    backend = demo("v1")

    def limit_descriptors():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    server = proxy([("v1", 100, [backend.address])], preexec_fn=limit_descriptors)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    sockets = []
    try:
        for _ in range(1000):
            sock = socket.socket()
            sock.setblocking(False)
            try:
                sock.connect(("127.0.0.1", server.port))
            except BlockingIOError:
                pass
            sockets.append(sock)
        time.sleep(0.5)
        start = cpu_seconds(server.process.pid)
        time.sleep(2)
        used = cpu_seconds(server.process.pid) - start
        assert used < 0.4, f"the proxy used {used:.2f} s of CPU in 2 s while out of descriptors"
    finally:
        for sock in sockets:
            sock.close()
    deadline = time.monotonic() + 10
    while True:
        try:
            if http_get(server.port, "/", auth())[0] == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "the proxy did not serve again after descriptors were freed"
        time.sleep(0.2)


def test_endless_interim_responses_end_in_502_with_bounded_memory(started, proxy):
    backend = ScriptedBackend(b"HTTP/1.1 100 Continue\r\n\r\n", keep_sending=b"HTTP/1.1 100 Continue\r\n\r\n" * 64)
    started.append(backend)
    server = proxy([("v1", 100, [backend.address])], extra={"timeouts": {"response_ms": 3000}})
    before = rss_kib(server.process.pid)
    response = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: a\r\n{AUTH}Connection: close\r\n\r\n".encode())
        stop_at = time.monotonic() + 5
        while time.monotonic() < stop_at and len(response) < 1 << 20:
            chunk = sock.recv(65536)
            if not chunk:
                break
            response += chunk
    assert status_of(response) == 100 and b"HTTP/1.1 502 " in response, response[-300:]
    assert response.count(b"100 Continue") <= 16, "interim responses must be capped"
    assert rss_kib(server.process.pid) - before < 16 * 1024 or not MEASURES_MEMORY


def test_two_hundred_refusing_endpoints_give_502_promptly(proxy):
    # Bound but not listening: a connect is refused at once.
    refusing = []
    for _ in range(200):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        refusing.append(sock)
    try:
        endpoints = [f"127.0.0.1:{sock.getsockname()[1]}" for sock in refusing]
        server = proxy([("v1", 100, endpoints)])
        start = time.monotonic()
        status, _, body = http_get(server.port, "/", auth())
        assert status == 502 and json.loads(body)["error"]["code"] == "upstream_connect_failed"
        assert time.monotonic() - start < 3
        assert http_get(server.port, "/", auth())[0] == 502  # the worker is still alive
    finally:
        for sock in refusing:
            sock.close()


def test_too_many_endpoints_is_a_located_config_error(tmp_path, proxy, demo):
    backend = demo("v1")
    server = proxy([("v1", 100, [backend.address])])
    endpoints = [f"127.0.0.1:{10000 + i}" for i in range(257)]
    server.write_versions([("v1", 100, endpoints)])
    wait_until(lambda: server.status()["last_reload"]["errors"])
    error = server.status()["last_reload"]["errors"][0]
    assert "versions.json:" in error and "257 endpoints" in error and "at most 256" in error
    assert http_get(server.port, "/", auth())[0] == 200


def test_a_fifo_as_versions_file_does_not_wedge_the_control_thread(demo, proxy, tmp_path):
    backend = demo("v1")
    server = proxy([("v1", 100, [backend.address])])
    fifo = tmp_path / "incoming.fifo"
    os.mkfifo(fifo)
    os.rename(fifo, tmp_path / "versions.json")
    deadline = time.monotonic() + 5
    while True:
        status = server.status()  # the admin API keeps answering
        if status["last_reload"]["errors"]:
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert "not a regular file" in status["last_reload"]["errors"][0]
    assert http_get(server.port, "/", auth())[0] == 200
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=10) == 0


def test_a_hundred_thousand_tokens_load_fast_and_each_works(demo, proxy):
    backend = demo("v1")
    tokens = [f"tok-{i:06d}-{os.urandom(8).hex()}" for i in range(100_000)] + [TOKEN]
    start = time.monotonic()
    server = proxy([("v1", 100, [backend.address])], tokens=tokens)
    assert time.monotonic() - start < 10 or SANITIZED, "start-up with 100,000 tokens must not be quadratic"
    assert http_get(server.port, "/", {"Authorization": f"Bearer {tokens[0]}"})[0] == 200
    assert http_get(server.port, "/", {"Authorization": f"Bearer {tokens[99_999]}"})[0] == 200
    assert http_get(server.port, "/", {"Authorization": f"Bearer {tokens[5][:-1]}"})[0] == 401


def test_h2c_upgrade_is_not_tunnelled(started, proxy):
    received = []

    class SwitchingBackend(ThreadedSocketServer):
        def serve(self, conn):
            received.append(read_head(conn))
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
            time.sleep(1)

    backend = SwitchingBackend()
    started.append(backend)
    server = proxy([("v1", 100, [backend.address])])
    request = (f"GET / HTTP/1.1\r\nHost: a\r\n{AUTH}Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
               "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n").encode()
    response = raw_exchange(server.port, request)
    assert status_of(response) == 502, response
    forwarded = received[0].lower()
    assert b"upgrade:" not in forwarded and b"http2-settings" not in forwarded and b"connection:" not in forwarded


def test_tunnel_closes_when_its_token_is_removed(demo, proxy, tmp_path):
    backend = demo("v1")
    server = proxy([("v1", 100, [backend.address])], tokens=(TOKEN, "other-token"))
    sock, head, _ = open_websocket(server.port)
    with sock:
        assert head.startswith(b"HTTP/1.1 101")
        (tmp_path / "tokens.txt.tmp").write_text("other-token\n")
        os.rename(tmp_path / "tokens.txt.tmp", tmp_path / "tokens.txt")
        sock.settimeout(5)
        assert sock.recv(4096) == b"", "the tunnel must close once its token is revoked"


def test_absolute_form_target_is_forwarded_in_origin_form(recorder, proxy):
    backend = recorder()
    server = proxy([("v1", 100, [backend.address])])
    for target, path, host in [(b"http://Example.internal:8080/p/q?x=1", "/p/q?x=1", "Example.internal:8080"),
                               (b"https://h.example?x", "/?x", "h.example")]:
        response = raw_exchange(server.port, b"GET " + target + f" HTTP/1.1\r\nHost: other\r\n{AUTH}Connection: close\r\n\r\n".encode())
        assert status_of(response) == 200
        assert backend.requests[-1]["path"] == path
        assert backend.requests[-1]["headers"]["host"] == host
    for target in [b"http://user@h/", b"http:///p", b"ftp://h/p", b"p/q"]:
        response = raw_exchange(server.port, b"GET " + target + f" HTTP/1.1\r\nHost: a\r\n{AUTH}\r\n".encode())
        assert status_of(response) == 400, target
