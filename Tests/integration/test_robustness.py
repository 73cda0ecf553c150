"""Hostile bytes from either side must never crash the proxy or leak through."""
import random
import socket
import threading

from harness import TOKEN, ThreadedSocketServer, auth, http_get

VALID = [
    f"GET /a HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n".encode(),
    f"POST /b HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello".encode(),
    f"POST /c HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".encode(),
    f"GET /d HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\nX-ANYSCALE-VERSION: v1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n".encode(),
]
SPECIAL = [b"\r", b"\n", b"\r\n", b"\x00", b" ", b":", b"\t", b"\r\n\r\n", b"0", b"ffffffffffffffff", b";", b",", b"\x80", b"\xff"]


def mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        choice = rng.random()
        position = rng.randrange(len(data) + 1)
        if choice < 0.3 and data:
            del data[position:position + rng.randint(1, 8)]
        elif choice < 0.6:
            data[position:position] = rng.choice(SPECIAL)
        elif choice < 0.8 and data:
            data[min(position, len(data) - 1)] = rng.randrange(256)
        else:
            data[position:position] = data[:rng.randint(0, len(data))]
    return bytes(data)


def send_and_drain(port, data, half_close):
    """Sends `data` (then half-closes, if asked) and reads until the proxy closes or pauses."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
            sock.settimeout(0.15)
            while chunk := sock.recv(65536):
                received += chunk
        except OSError:
            pass
    return received


def test_mutated_requests_never_crash_the_proxy(demo, proxy):
    backend = demo("v1")
    server = proxy([("v1", 100, [backend.address])], extra={"timeouts": {"request_head_ms": 500, "response_ms": 1000}})
    rng = random.Random(2026)
    answered = 0
    for _ in range(400):
        answered += bool(send_and_drain(server.port, mutate(rng, rng.choice(VALID)), half_close=rng.random() < 0.5))
    assert answered > 100
    assert server.process.poll() is None
    assert http_get(server.port, "/", auth())[0] == 200


class HostileBackend(ThreadedSocketServer):
    """Answers every request with seeded random mutations of a valid response."""

    RESPONSES = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nxx",
    ]

    def __init__(self, seed):
        super().__init__()
        self.rng = random.Random(seed)
        self.lock = threading.Lock()

    def serve(self, conn):
        conn.settimeout(2)
        conn.recv(65536)
        with self.lock:
            response = mutate(self.rng, self.rng.choice(self.RESPONSES))
        conn.sendall(response)


def test_hostile_backend_responses_never_crash_the_proxy(proxy, started):
    backend = HostileBackend(seed=7)
    started.append(backend)
    server = proxy([("v1", 100, [backend.address])], extra={"timeouts": {"response_ms": 500}})
    rng = random.Random(1)
    answered = 0
    for _ in range(300):
        answered += bool(send_and_drain(server.port, rng.choice(VALID), half_close=False))
    assert answered > 100
    assert server.process.poll() is None
    status = http_get(server.admin_port, "/healthz")[0]
    assert status == 200
