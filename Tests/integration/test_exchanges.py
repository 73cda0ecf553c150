"""Every exchange ends in exactly one finish, and `/status` counts it by outcome."""
import socket
import time

from harness import TOKEN, auth, http_get, open_websocket, raw_exchange, read_head
from test_lifecycle import free_port


def test_every_exchange_is_counted_once_by_its_outcome(demo, proxy):
    v1 = demo("v1")
    dead = f"127.0.0.1:{free_port()}"
    server = proxy([("v1", 100, [v1.address]), ("dead", 0, [dead]), ("failover", 0, [f"127.0.0.1:{free_port()}", v1.address])],
                   extra={"timeouts": {"response_ms": 300}})
    for _ in range(5):
        assert http_get(server.port, "/", auth())[0] == 200
    # Four keep-alive requests on one connection, then the backend's own 404 (still completed).
    request = f"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        for _ in range(4):
            conn.sendall(request)
            assert read_head(conn).startswith(b"HTTP/1.1 200 ")
    assert http_get(server.port, "/status/404", auth())[0] == 404
    assert http_get(server.port, "/")[0] == 401
    assert http_get(server.port, "/", {"Authorization": "Bearer wrong"})[0] == 401
    assert http_get(server.port, "/", auth({"X-ANYSCALE-VERSION": "nope"}))[0] == 404
    assert raw_exchange(server.port, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert http_get(server.port, "/", auth({"X-ANYSCALE-VERSION": "dead"}))[0] == 502
    # Its first endpoint refuses: the next one answers (a retry).
    assert http_get(server.port, "/", auth({"X-ANYSCALE-VERSION": "failover"}))[0] == 200
    assert http_get(server.port, "/?delay_ms=600", auth())[0] == 504
    # A client that leaves before its (delayed) response.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(f"GET /?delay_ms=300 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        time.sleep(0.1)
    # A WebSocket tunnel, closed by the client.
    sock, head, _ = open_websocket(server.port)
    assert head.startswith(b"HTTP/1.1 101 ")
    sock.close()
    time.sleep(0.8)  # the left request's backend answers (and is dropped); the tunnel closes

    exchanges = server.settled_status()["exchanges"]
    traffic = {key: exchanges.pop(key) for key in ("bytes_to_clients", "bytes_to_backends")}
    assert exchanges == {
        "finished": 19, "completed": 11, "tunnelled": 1, "client_gone": 1,
        "rejected": {"bad_request": 1, "missing_token": 1, "invalid_token": 1, "unknown_version": 1,
                     "upstream_connect_failed": 1, "upstream_timeout": 1},
        "truncated": {}, "retries": 1,
    }, exchanges
    # 11 responses of the demo backend (each over 100 bytes) went to clients, their heads to it.
    assert traffic["bytes_to_clients"] > 11 * 100 and traffic["bytes_to_backends"] > 11 * 50, traffic


def test_a_response_cut_by_its_backend_counts_as_truncated(proxy):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    server = proxy([("v1", 100, [f"127.0.0.1:{listener.getsockname()[1]}"])])
    client = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    client.sendall(f"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
    backend, _ = listener.accept()
    read_head(backend)
    backend.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
    assert read_head(client).startswith(b"HTTP/1.1 200 ")
    backend.close()
    client.settimeout(5)
    while client.recv(65536):
        pass  # the proxy closes the client connection: a truncated body must not look complete
    client.close()
    listener.close()
    exchanges = server.settled_status()["exchanges"]
    assert exchanges["finished"] == 1 and exchanges["truncated"] == {"upstream_closed": 1}, exchanges
