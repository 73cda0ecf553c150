"""HTTP/2 from clients (h2c with prior knowledge, h2 by ALPN) to HTTP/1.1 backends, with real
clients: curl, nghttp, h2load and the `h2` package."""
import json
import re
import signal
import socket
import subprocess
import threading
import time

from h2client import H2Client
from harness import TOKEN, ThreadedSocketServer, http_get
from test_tls import tls_listener, tls_port

AUTH = {"authorization": f"Bearer {TOKEN}"}


def curl_h2(port, path, *args):
    return subprocess.run(["curl", "-s", "-i", "--http2-prior-knowledge", "-H", f"Authorization: Bearer {TOKEN}", *args,
                           f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, timeout=20)


def test_curl_h2c_and_http1_share_the_port_and_the_backend_gets_http1(recorder, proxy):
    backend = recorder("v1")
    server = proxy([("v1", 100, [backend.address])])
    result = curl_h2(server.port, "/hello?x=1", "-H", "Cookie: a=1", "-H", "Cookie: b=2", "-H", "TE: trailers")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("HTTP/2 200"), result.stdout
    assert "x-anyscale-version: v1" in result.stdout
    assert json.loads(result.stdout.split("\n\n", 1)[1]) == {"version": "v1", "path": "/hello?x=1"}
    seen = backend.requests[0]
    assert seen["method"] == "GET" and seen["path"] == "/hello?x=1"
    headers = seen["headers"]
    assert headers["host"] == f"127.0.0.1:{server.port}", ":authority becomes Host"
    assert headers["cookie"] == "a=1; b=2", "cookie fields are joined for HTTP/1.1"
    assert "te" not in headers and "authorization" not in headers and "connection" not in headers
    assert headers["x-forwarded-proto"] == "http" and headers["x-forwarded-for"] == "127.0.0.1"
    # HTTP/1.1 on the same port as before.
    status, response_headers, _ = http_get(server.port, "/h1", AUTH)
    assert status == 200 and response_headers["x-anyscale-version"] == "v1"


def test_request_bodies_with_and_without_length(recorder, proxy):
    backend = recorder()
    server = proxy([("v1", 100, [backend.address])])
    body = bytes(range(256)) * 4096  # 1 MiB: many windows' worth
    result = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-H", f"Authorization: Bearer {TOKEN}",
                             "--data-binary", "@-", f"http://127.0.0.1:{server.port}/upload"],
                            input=body, capture_output=True, timeout=20)
    assert result.returncode == 0 and b'"/upload"' in result.stdout
    assert backend.requests[0]["body"] == body and backend.requests[0]["headers"]["content-length"] == str(len(body))
    # No content-length: the backend gets it chunked.
    client = H2Client(server.port)
    stream = client.request("/chunked", AUTH, method="POST", body=b"part one, ", end_stream=False)
    client.conn.send_data(stream, b"part two", end_stream=True)
    client.flush()
    [response] = client.wait(stream)
    assert response.status == 200
    seen = backend.requests[1]
    assert seen["headers"]["transfer-encoding"] == "chunked" and seen["body"] == b"part one, part two"


def test_h2_over_tls_by_alpn(recorder, proxy, tmp_path):
    backend = recorder()
    listeners, a_cert, _ = tls_listener(str(tmp_path))
    server = proxy([("v1", 100, [backend.address])], extra=listeners)
    port = tls_port(server)
    result = subprocess.run(["curl", "-s", "-i", "--http2", "--cacert", a_cert, "--resolve", f"a.test:{port}:127.0.0.1",
                             "-H", f"Authorization: Bearer {TOKEN}", f"https://a.test:{port}/tls"],
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("HTTP/2 200"), result.stdout
    assert backend.requests[0]["headers"]["x-forwarded-proto"] == "https"
    # A client offering only http/1.1 still gets it.
    result = subprocess.run(["curl", "-s", "-i", "--http1.1", "--cacert", a_cert, "--resolve", f"a.test:{port}:127.0.0.1",
                             "-H", f"Authorization: Bearer {TOKEN}", f"https://a.test:{port}/tls"],
                            capture_output=True, text=True, timeout=20)
    assert result.stdout.startswith("HTTP/1.1 200"), result.stdout


def test_streams_of_one_connection_route_on_their_own(recorder, proxy):
    v1, v2, dark = recorder("v1"), recorder("v2"), recorder("dark")
    server = proxy([("v1", 50, [v1.address]), ("v2", 50, [v2.address]), ("dark", 0, [dark.address])])
    client = H2Client(server.port)
    pins = ["v1", "v2", "dark", None] * 20
    streams = [client.request(f"/s{i}", {**AUTH, **({"x-anyscale-version": pin} if pin else {})}) for i, pin in enumerate(pins)]
    responses = client.wait(streams)
    sampled = set()
    for pin, response in zip(pins, responses):
        assert response.status == 200
        version = response.headers["x-anyscale-version"]
        assert json.loads(response.data)["version"] == version
        if pin:
            assert version == pin
        else:
            sampled.add(version)
    assert sampled <= {"v1", "v2"} and sampled, "unpinned streams are sampled among the weighted versions"
    # Each stream is its own exchange in the counters.
    assert server.settled_status()["exchanges"]["completed"] == len(pins)


def test_nghttp_many_concurrent_streams(demo, proxy):
    v1 = demo("v1")
    server = proxy([("v1", 100, [v1.address])])
    urls = [f"http://127.0.0.1:{server.port}/n{i}" for i in range(50)]
    result = subprocess.run(["nghttp", "-n", "-s", "-H", f"Authorization: Bearer {TOKEN}", *urls],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(" 200 ") == 50 or result.stdout.count("200") >= 50, result.stdout[-2000:]


def test_h2load_100000_requests_without_an_error(demo, proxy):
    v1, v2 = demo("v1"), demo("v2")
    server = proxy([("v1", 50, [v1.address]), ("v2", 50, [v2.address])])
    result = subprocess.run(["h2load", "-n", "100000", "-c", "8", "-m", "10", "-H", f"Authorization: Bearer {TOKEN}",
                             f"http://127.0.0.1:{server.port}/"], capture_output=True, text=True, timeout=240)
    assert "100000 succeeded, 0 failed, 0 errored, 0 timeout" in result.stdout, result.stdout[-1500:]
    assert "100000 2xx" in result.stdout


def test_proxy_errors_are_http2_responses(recorder, proxy):
    backend = recorder()
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{unused.getsockname()[1]}"
    server = proxy([("v1", 100, [backend.address]), ("gone", 0, [closed])])
    client = H2Client(server.port)
    missing = client.request("/", {})
    invalid = client.request("/", {"authorization": "Bearer wrong"})
    unknown = client.request("/", {**AUTH, "x-anyscale-version": "v9"})
    unreachable = client.request("/", {**AUTH, "x-anyscale-version": "gone"})
    ok = client.request("/after", AUTH)
    responses = client.wait([missing, invalid, unknown, unreachable, ok])
    codes = [(r.status, json.loads(r.data)["error"]["code"] if r.status != 200 else None) for r in responses]
    assert codes == [(401, "unauthorized"), (401, "unauthorized"), (404, "unknown_version"), (502, "upstream_connect_failed"),
                     (200, None)], codes
    assert responses[0].headers["www-authenticate"].startswith("Bearer")
    assert "v1" in json.loads(responses[2].data)["error"]["message"]
    assert responses[3].headers["x-anyscale-version"] == "gone"
    assert int(responses[0].headers["content-length"]) == len(responses[0].data)
    assert [r["path"] for r in backend.requests] == ["/after"], "the connection went on after each error"


def test_sse_over_h2_arrives_event_by_event(recorder, proxy):
    backend = recorder()
    server = proxy([("v1", 100, [backend.address])])
    client = H2Client(server.port)
    stream = client.request("/stream?events=6", AUTH)
    [response] = client.wait(stream)
    assert response.status == 200 and response.headers["content-type"] == "text/event-stream"
    assert response.data == b"".join(f"data: {i}\n\n".encode() for i in range(6))
    times = [t for t, size in response.data_times if size]
    assert len(times) >= 5, "each event in a DATA frame of its own, as the backend sent it"
    assert times[-1] - times[0] >= 0.2, "the events were spread over the backend's 50 ms pauses"


def test_response_trailers_reach_the_client(proxy):
    class TrailerBackend(ThreadedSocketServer):
        def serve(self, conn):
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n"
                         b"5\r\nhello\r\n0\r\nX-Checksum: abc123\r\n\r\n")
            time.sleep(0.5)

    backend = TrailerBackend()
    try:
        server = proxy([("v1", 100, [backend.address])])
        client = H2Client(server.port)
        [response] = client.wait(client.request("/", {**AUTH, "te": "trailers"}))
        assert response.status == 200 and bytes(response.data) == b"hello"
        assert response.trailers == {"x-checksum": "abc123"}
    finally:
        backend.stop()


def test_client_reset_closes_the_backend_connection(recorder, proxy):
    backend = recorder()
    server = proxy([("v1", 100, [backend.address])])
    client = H2Client(server.port)
    stream = client.request("/stream?events=200", AUTH)
    client.wait_for(lambda: len(client.responses[stream].data) > 0)
    client.conn.reset_stream(stream, error_code=8)  # CANCEL
    client.flush()
    assert backend.disconnects.wait(5), "the backend must learn that the client went away"
    # The connection serves on.
    [response] = client.wait(client.request("/next", AUTH))
    assert response.status == 200


def test_upload_window_opens_only_as_the_backend_reads(proxy):
    class StalledBackend(ThreadedSocketServer):
        def serve(self, conn):
            conn.recv(1024)  # the head, then nothing more is read
            time.sleep(5)

    backend = StalledBackend()
    try:
        server = proxy([("v1", 100, [backend.address])])
        client = H2Client(server.port)
        stream = client.request("/upload", {**AUTH, "content-length": str(10 * 1024 * 1024)}, method="POST", end_stream=False)
        sent = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            window = min(client.conn.local_flow_control_window(stream), client.conn.max_outbound_frame_size)
            if window > 0:
                client.conn.send_data(stream, b"x" * window)
                client.flush()
                sent += window
            else:
                client.receive(timeout=0.3)
        # The backend's socket buffers take some; beyond that only one stream window.
        assert sent < 8 * 1024 * 1024, f"the proxy took {sent} bytes a stalled backend could not"
    finally:
        backend.stop()


def test_sigterm_sends_goaway_and_streams_in_flight_finish(recorder, proxy):
    backend = recorder()
    server = proxy([("v1", 100, [backend.address])])
    # nghttp, since the h2 package stops reading at GOAWAY.
    client = subprocess.Popen(["nghttp", "-v", "-H", f"Authorization: Bearer {TOKEN}",
                               f"http://127.0.0.1:{server.port}/stream?events=10"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.2)  # the stream is open (its events take 0.5 s)
    server.process.send_signal(signal.SIGTERM)
    output, _ = client.communicate(timeout=20)
    goaway = re.search(r"last_stream_id=(\d+), error_code=NO_ERROR", output)
    assert goaway, output[-2000:]
    assert f"recv DATA frame <length=0, flags=0x01, stream_id={goaway.group(1)}>" in output, "GOAWAY names the stream in flight"
    assert all(f"data: {i}\n" in output for i in range(10)), "the stream in flight finished"
    assert server.process.wait(timeout=10) == 0


def test_idle_connection_closes_but_a_busy_one_does_not(recorder, proxy):
    backend = recorder()
    server = proxy([("v1", 100, [backend.address])], extra={"timeouts": {"idle_ms": 600}})
    client = H2Client(server.port)
    stream = client.request("/stream?events=20", AUTH)  # 1 s of events: longer than idle_ms
    [response] = client.wait(stream)
    assert response.ended and len(response.data) == sum(len(f"data: {i}\n\n") for i in range(20))
    start = time.monotonic()
    client.wait_for(lambda: client.closed, timeout=5)
    assert client.closed and time.monotonic() - start < 2


def test_access_log_names_http2(recorder, proxy, tmp_path):
    backend = recorder()
    server = proxy([("v1", 100, [backend.address])], extra={"access_log": {"path": str(tmp_path / "access.log")}})
    assert curl_h2(server.port, "/logged").stdout.startswith("HTTP/2 200")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = (tmp_path / "access.log").read_text().splitlines() if (tmp_path / "access.log").exists() else []
        if lines:
            break
        time.sleep(0.1)
    entry = json.loads(lines[0])
    assert entry["protocol"] == "HTTP/2" and entry["path"] == "/logged" and entry["status"] == 200 and entry["version"] == "v1"


def test_many_connections_at_once(demo, proxy):
    v1 = demo("v1")
    server = proxy([("v1", 100, [v1.address])])
    failures = []

    def run():
        try:
            client = H2Client(server.port)
            streams = [client.request(f"/c{i}", AUTH) for i in range(20)]
            if any(r.status != 200 for r in client.wait(streams)):
                failures.append("status")
            client.close()
        except Exception as error:  # noqa: BLE001 - collected for the assertion below
            failures.append(repr(error))

    threads = [threading.Thread(target=run) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures



def test_streams_a_client_does_not_read_hold_little_memory(proxy):
    """50 streams with their windows shut, each from a backend sending 100 MB: the proxy
    reads each backend only as far as a small per-stream limit."""
    from h2client import RawH2
    from harness import MEASURES_MEMORY, rss_kib
    from hpack import Encoder
    from hyperframe.frame import HeadersFrame, SettingsFrame

    class FloodingBackend(ThreadedSocketServer):
        def serve(self, conn):
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
            conn.settimeout(10)
            chunk = b"x" * 65536
            for _ in range(1500):
                conn.sendall(chunk)

    backend = FloodingBackend()
    try:
        server = proxy([("v1", 100, [backend.address])], workers=1)
        before = rss_kib(server.process.pid)
        client = RawH2(server.port)
        client.send(SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0}))
        encoder = Encoder()
        frames = []
        for stream in range(1, 101, 2):
            frame = HeadersFrame(stream, encoder.encode([(":method", "GET"), (":scheme", "http"), (":path", "/"),
                                                         (":authority", "a"), ("authorization", f"Bearer {TOKEN}")]))
            frame.flags = {"END_STREAM", "END_HEADERS"}
            frames.append(frame)
        client.send(*frames)
        answered = {f.stream_id for f in client.frames(timeout=3) if isinstance(f, HeadersFrame)}
        assert len(answered) == 50, "every stream got its response head"
        time.sleep(1)
        grown = rss_kib(server.process.pid) - before
        assert grown < 8 * 1024 or not MEASURES_MEMORY, f"the proxy holds {grown} KiB for 50 stalled streams"
        client.close()
    finally:
        backend.stop()


def test_idle_connections_give_their_frame_buffers_back_and_serve_on(demo, proxy):
    """After a 100 KB response (full 16 KiB DATA frames through the session's frame buffer),
    200 idle connections hold about 8 KiB each, not the 16 KiB more they last wrote frames
    into; each one then serves the same response again. One connection at a time, as in the
    benchmark: a burst of concurrent responses would raise the heap's high-water mark instead."""
    from harness import MEASURES_MEMORY, rss_kib, wait_until
    v1 = demo("v1")
    server = proxy([("v1", 100, [v1.address])], workers=1)

    def fetch(client):
        [response] = client.wait(client.request("/bytes?n=100000", AUTH))
        assert response.headers[":status"] == "200" and response.data == b"x" * 100000

    fetch(H2Client(server.port))  # the worker's pools and free lists fill
    before = rss_kib(server.process.pid)
    clients = [H2Client(server.port) for _ in range(200)]
    for client in clients:
        fetch(client)
    if MEASURES_MEMORY:
        per_connection = lambda: (rss_kib(server.process.pid) - before) / len(clients)
        wait_until(lambda: per_connection() < 14, timeout=3,
                   what=lambda: f"idle connections holding under 14 KiB each (now {per_connection():.1f})")
    for client in clients:
        fetch(client)
        client.sock.close()
