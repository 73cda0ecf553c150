"""HTTP/1.1 behaviour through the real proxy: strict parsing, framing, streaming, upgrades."""
import json
import os
import socket
import struct
import time

import pytest

from harness import MEASURES_MEMORY, TOKEN, open_websocket, raw_exchange, rss_kib

AUTH = f"Authorization: Bearer {TOKEN}\r\n"


def status_of(response):
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else None


@pytest.mark.parametrize("request_bytes, expected", [
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3x\r\n\r\nabc", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nabc", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\nabc", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX-Space : b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX-Nul: a\x00b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX-Cr: a\rb\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX-ANYSCALE-VERSION: v1\r\nX-ANYSCALE-VERSION: v2\r\n\r\n", 400),
    (b"GET / HTTP/1.1\nHost: a\n\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(101)) + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 70000 + b"\r\n\r\n", 431),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400),
])
def test_malformed_requests_are_refused_and_never_forwarded(recorder, proxy, request_bytes, expected):
    backend = recorder()
    server = proxy([("v1", 100, [backend.address])])
    request_bytes = request_bytes.replace(b"Host: a\r\n", b"Host: a\r\n" + AUTH.encode(), 1)
    response = raw_exchange(server.port, request_bytes)
    assert status_of(response) == expected, response[:200]
    assert b"Connection: close" in response
    assert json.loads(response.split(b"\r\n\r\n", 1)[1])["error"]["code"]
    # (The bad chunk size arrives with the head, so it is found before anything is sent.)
    assert backend.requests == []


def test_pipelined_requests_are_answered_in_order(demo, proxy):
    backend = demo("v1")
    server = proxy([("v1", 100, [backend.address])])
    requests = b"".join(
        f"GET /p{i} HTTP/1.1\r\nHost: a\r\n{AUTH}{'Connection: close' + chr(13) + chr(10) if i == 4 else ''}\r\n".encode()
        for i in range(5))
    response = raw_exchange(server.port, requests)
    paths = [json.loads(part.split(b"\r\n\r\n", 1)[1].split(b"\n")[0])["path"]
             for part in response.split(b"HTTP/1.1 200 OK")[1:]]
    assert paths == ["/p0", "/p1", "/p2", "/p3", "/p4"]


def test_head_and_keep_alive(demo, proxy):
    backend = demo("v1")
    server = proxy([("v1", 100, [backend.address])])
    request = f"HEAD /h HTTP/1.1\r\nHost: a\r\n{AUTH}\r\nGET /g HTTP/1.1\r\nHost: a\r\n{AUTH}Connection: close\r\n\r\n"
    response = raw_exchange(server.port, request.encode())
    head_response, rest = response.split(b"\r\n\r\n", 1)
    assert b"Content-Length:" in head_response
    assert rest.startswith(b"HTTP/1.1 200 OK"), "the HEAD response must carry no body"
    assert b'"path":"/g"' in rest


def test_request_bodies_arrive_intact_in_both_framings(recorder, proxy):
    backend = recorder()
    server = proxy([("v1", 100, [backend.address])])
    body = os.urandom(3 * 1024 * 1024)
    request = f"POST /big HTTP/1.1\r\nHost: a\r\n{AUTH}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
    assert status_of(raw_exchange(server.port, request + body, timeout=20)) == 200
    assert backend.requests[-1]["body"] == body
    chunks = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(body[i:i + 70000]), body[i:i + 70000]) for i in range(0, len(body), 70000))
    request = f"POST /chunked HTTP/1.1\r\nHost: a\r\n{AUTH}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
    response = raw_exchange(server.port, request + chunks + b"0\r\nX-Trailer: t\r\n\r\n", timeout=20)
    assert status_of(response) == 200
    assert backend.requests[-1]["body"] == body


def test_large_response_streams_through(demo, proxy):
    backend = demo("v1")
    server = proxy([("v1", 100, [backend.address])])
    request = f"GET /bytes?n=5000000 HTTP/1.1\r\nHost: a\r\n{AUTH}Connection: close\r\n\r\n".encode()
    response = raw_exchange(server.port, request, timeout=20)
    assert len(response.split(b"\r\n\r\n", 1)[1]) == 5000000


def test_expect_100_continue_is_relayed(recorder, proxy):
    backend = recorder()
    server = proxy([("v1", 100, [backend.address])])
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(f"POST /upload HTTP/1.1\r\nHost: a\r\n{AUTH}Content-Length: 5\r\nExpect: 100-continue\r\n\r\n".encode())
        interim = sock.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n"), interim
        sock.sendall(b"hello")
        final = b""
        while b'"path"' not in final:
            final += sock.recv(4096)
        assert b"HTTP/1.1 200 OK" in final
    assert backend.requests[-1]["body"] == b"hello"


def test_server_sent_events_arrive_as_they_are_sent(demo, proxy):
    backend = demo("v1")
    server = proxy([("v1", 100, [backend.address])])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        start = time.monotonic()
        sock.sendall(f"GET /stream?chunks=4&interval_ms=400 HTTP/1.1\r\nHost: a\r\n{AUTH}\r\n".encode())
        received, first_event_at = b"", None
        while not received.endswith(b"0\r\n\r\n"):
            received += sock.recv(65536)
            if first_event_at is None and b"data:" in received:
                first_event_at = time.monotonic() - start
        total = time.monotonic() - start
    # The backend sends the last event 1.2 s after the first: the first must not wait for it.
    assert first_event_at < 0.8, first_event_at
    assert total >= 1.2
    assert received.count(b"data: ") == 4
    assert b"Transfer-Encoding: chunked" in received and b"X-ANYSCALE-VERSION: v1" in received


def test_client_disconnect_cancels_the_backend_request(recorder, proxy):
    backend = recorder()
    server = proxy([("v1", 100, [backend.address])])
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(f"GET /stream HTTP/1.1\r\nHost: a\r\n{AUTH}\r\n".encode())
        assert b"data: 0" in sock.recv(65536) + sock.recv(65536)
    # The stream would run 10 s; the backend must see its connection go away well before.
    assert backend.disconnects.wait(timeout=3)


def websocket_frame(opcode, payload):
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    length = len(payload)
    header = bytes([0x80 | opcode])
    if length < 126:
        header += bytes([0x80 | length])
    else:
        header += bytes([0x80 | 126]) + struct.pack(">H", length)
    return header + mask + masked


def test_websocket_upgrade_becomes_a_tunnel(demo, proxy):
    backend = demo("v1")
    server = proxy([("v1", 100, [backend.address])])
    sock, head, rest = open_websocket(server.port)
    with sock:
        assert head.startswith(b"HTTP/1.1 101")
        assert b"X-ANYSCALE-VERSION: v1" in head
        for message in (b"hello", b"x" * 1000):
            sock.sendall(websocket_frame(0x1, message))
            expected = 2 + (2 if len(message) >= 126 else 0) + len(message)
            while len(rest) < expected:
                rest += sock.recv(4096)
            assert rest[expected - len(message):expected] == message
            rest = rest[expected:]
        sock.sendall(websocket_frame(0x8, b"\x03\xe8"))
        assert sock.recv(4096)[0] == 0x88


def test_a_slow_reader_holds_back_the_backend_instead_of_filling_memory(demo, proxy):
    backend = demo("v1")
    server = proxy([("v1", 100, [backend.address])])
    size = 60_000_000
    before = rss_kib(server.process.pid)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(f"GET /bytes?n={size} HTTP/1.1\r\nHost: a\r\n{AUTH}Connection: close\r\n\r\n".encode())
        time.sleep(2)  # read nothing: the proxy must stop reading from the backend
        held = rss_kib(server.process.pid) - before
        received = 0
        while chunk := sock.recv(1 << 20):
            received += len(chunk)
    assert held < 16 * 1024 or not MEASURES_MEMORY, f"proxy grew by {held} KiB while the client did not read"
    assert received > size


def test_many_pipelined_requests_beyond_one_buffer_all_get_answers(demo, proxy):
    backend = demo("v1")
    server = proxy([("v1", 100, [backend.address])])
    count = 1500  # about 150 KiB of requests: more than the proxy reads ahead while one is served
    request = f"GET /pipelined HTTP/1.1\r\nHost: a\r\n{AUTH}X-Padding: {'p' * 40}\r\n\r\n".encode()
    closing = f"GET /last HTTP/1.1\r\nHost: a\r\n{AUTH}Connection: close\r\n\r\n".encode()
    response = raw_exchange(server.port, request * count + closing, timeout=30)
    assert response.count(b"HTTP/1.1 200 OK") == count + 1
    assert response.rstrip().endswith(b'"body_bytes":0}')


def test_large_upload_while_the_backend_connect_is_pending(started, proxy):
    """The client's body fills the proxy's read-ahead while the backend connect is pending; once
    connected, the proxy must read the rest of the body (this stalled when the connect did
    not complete at once)."""
    import threading
    from harness import FullBacklogListener, read_chunked
    # The proxy's SYN is dropped and retried about a second later.
    backlog = FullBacklogListener()
    started.append(backlog)
    listener = backlog.listener
    received = {}

    def backend():
        time.sleep(0.5)
        backlog.release()
        while "body" not in received:
            conn, _ = listener.accept()
            with conn:
                stream = conn.makefile("rb")
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = stream.readline()
                    if not line:
                        break
                    head += line
                if not head.startswith(b"POST"):
                    continue
                received["body"] = read_chunked(stream)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    threading.Thread(target=backend, daemon=True).start()
    server = proxy([("v1", 100, [backlog.address])], extra={"timeouts": {"connect_ms": 5000}})
    body = os.urandom(3 * 1024 * 1024)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 70000]), body[i:i + 70000]) for i in range(0, len(body), 70000))
    request = f"POST /chunked HTTP/1.1\r\nHost: a\r\n{AUTH}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
    response = raw_exchange(server.port, request + chunks + b"0\r\n\r\n", timeout=10)
    assert status_of(response) == 200, response[:200]
    assert received["body"] == body
