"""Start-up checks, backend failures, timeouts and graceful shutdown."""
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from harness import BINARY, TOKEN, ThreadedSocketServer, auth, free_port, http_get, raw_exchange, read_head, wait_until


def test_refuses_to_start_without_tokens(tmp_path, demo):
    v1 = demo("v1")
    (tmp_path / "versions.json").write_text(json.dumps(
        {"service": "s", "versions": [{"name": "v1", "traffic_percent": 100, "endpoints": [v1.address]}]}))
    (tmp_path / "switchyard.json").write_text('{"listeners": [{"address": "127.0.0.1:0"}], "admin": {"address": "127.0.0.1:0"}}')
    result = subprocess.run([BINARY, "serve", "--config", str(tmp_path / "switchyard.json")],
                            capture_output=True, text=True, timeout=20)
    assert result.returncode != 0
    assert "auth.tokens_file" in result.stderr and "auth.disabled" in result.stderr


def test_auth_can_be_disabled_explicitly(demo, proxy):
    v1 = demo("v1")
    server = proxy([("v1", 100, [v1.address])], extra={"auth": {"disabled": True}})
    assert http_get(server.port, "/")[0] == 200


def test_connect_failure_fails_over_to_the_next_endpoint(demo, proxy):
    v1 = demo("v1")
    dead = f"127.0.0.1:{free_port()}"
    server = proxy([("v1", 100, [dead, v1.address])])
    for _ in range(20):
        status, headers, _ = http_get(server.port, "/", auth())
        assert status == 200 and headers["x-anyscale-version"] == "v1"


def test_all_endpoints_down_gives_502(proxy):
    server = proxy([("v1", 100, [f"127.0.0.1:{free_port()}"])])
    status, headers, body = http_get(server.port, "/", auth())
    assert status == 502
    assert json.loads(body)["error"]["code"] == "upstream_connect_failed"
    assert headers["x-anyscale-version"] == "v1", "a failure is attributed to the version chosen"


def test_slow_backend_gives_504(demo, proxy):
    v1 = demo("v1")
    server = proxy([("v1", 100, [v1.address])], extra={"timeouts": {"response_ms": 300}})
    status, headers, body = http_get(server.port, "/?delay_ms=2000", auth())
    assert status == 504
    assert json.loads(body)["error"]["code"] == "upstream_timeout"
    assert headers["x-anyscale-version"] == "v1"


def test_incomplete_head_times_out_with_408(demo, proxy):
    v1 = demo("v1")
    server = proxy([("v1", 100, [v1.address])], extra={"timeouts": {"request_head_ms": 300}})
    start = time.monotonic()
    response = raw_exchange(server.port, b"GET / HTTP/1.1\r\nHost: a\r\n", timeout=5)
    assert response.startswith(b"HTTP/1.1 408")
    assert time.monotonic() - start < 2


def test_sigterm_lets_in_flight_requests_finish_then_exits_0(demo, proxy):
    v1 = demo("v1")
    server = proxy([("v1", 100, [v1.address])])
    results = {}

    def slow_request():
        results["response"] = http_get(server.port, "/?delay_ms=1000", auth())

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.3)
    server.process.terminate()
    thread.join(timeout=10)
    assert results["response"][0] == 200
    assert results["response"][1].get("connection") == "close"
    assert server.process.wait(timeout=10) == 0
    try:
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
        assert False, "the listener must be closed after the drain"
    except OSError:
        pass


def test_admin_api(demo, proxy):
    v1 = demo("v1")
    server = proxy([("v1", 100, [v1.address])])
    assert http_get(server.admin_port, "/healthz")[0] == 200
    status = server.status()
    assert status["service"] == "test"
    [version] = status["versions"]
    assert {key: version[key] for key in ("name", "traffic_percent", "effective_traffic_percent", "endpoints", "state",
                                          "health_check", "on_unhealthy", "in_flight")} == {
        "name": "v1", "traffic_percent": 100, "effective_traffic_percent": 100, "endpoints": [v1.address],
        "state": "RUNNING", "health_check": False, "on_unhealthy": "redistribute", "in_flight": 0}
    assert version["addresses"] == [{"address": v1.address, "state": "NOT_CHECKED", "last_check": None, "last_failure": None}]
    assert http_get(server.admin_port, "/nope")[0] == 404
    # The admin port never serves client traffic and the client port never serves admin.
    assert http_get(server.port, "/status", auth())[1]["x-anyscale-version"] == "v1"


def test_demo_backend_health_like_ray_serve(demo):
    v1 = demo("v1")
    host, port = v1.address.split(":")
    status, _, body = http_get(int(port), "/-/healthz")
    assert (status, body) == (200, b"success")


class ClosingBackend(ThreadedSocketServer):
    """Answers the first request of each connection with keep-alive, then closes the
    connection without a word when the second request arrives — like a backend whose idle
    timer fired just as the proxy reused the connection."""

    def serve(self, conn):
        if not read_head(conn):
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        conn.recv(65536)  # the second request: hang up on it


def test_a_reused_connection_closed_by_the_backend_is_retried_for_idempotent_requests(proxy, started):
    backend = ClosingBackend()
    started.append(backend)
    server = proxy([("v1", 100, [backend.address])], workers=1)
    for _ in range(5):
        status, _, body = http_get(server.port, "/", auth())
        assert (status, body) == (200, b"ok")
    assert backend.connections == 5
    # A POST is not repeated: it may have been processed.
    import http.client
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    connection.request("POST", "/", body=b"x", headers=auth())
    assert connection.getresponse().status == 502


def test_stalled_admin_connections_are_closed(demo, proxy):
    v1 = demo("v1")
    server = proxy([("v1", 100, [v1.address])])
    with socket.create_connection(("127.0.0.1", server.admin_port), timeout=10) as sock:
        sock.sendall(b"GET /status HTTP/1.1\r\n")  # never finished
        start = time.monotonic()
        assert sock.recv(1024) == b""
        assert time.monotonic() - start < 8
    assert http_get(server.admin_port, "/healthz")[0] == 200


def test_a_slow_upload_that_keeps_moving_does_not_get_504(recorder, proxy):
    backend = recorder()
    server = proxy([("v1", 100, [backend.address])], extra={"timeouts": {"response_ms": 400}})
    pieces = [b"x" * 1000] * 8
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"POST /upload HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\n"
                     f"Content-Length: {sum(map(len, pieces))}\r\nConnection: close\r\n\r\n".encode())
        for piece in pieces:  # 8 × 200 ms: four times response_ms in all, never silent for long
            time.sleep(0.2)
            sock.sendall(piece)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 200"), response[:200]
    assert len(backend.requests[-1]["body"]) == 8000


def test_ctrl_c_on_the_demo_stops_every_process(tmp_path):
    """`make run`'s demo (fixed ports 8001, 8002, 9001, 9002, 8080, 8443, 9901) with the debug
    binary: it serves HTTP, HTTPS with the self-signed certificate it makes, and the README's
    gRPC example call."""
    import os
    import signal
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for port in (8001, 8002, 9001, 9002, 8080, 8443, 9901):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                pytest.skip(f"port {port} is in use here; the demo needs it")
    demo = subprocess.Popen(["make", "--no-print-directory", "-s", "demo", f"DEMO_BIN={BINARY}"], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if http_get(8080, "/", {"Authorization": "Bearer demo-token-change-me"})[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the demo did not start"
            time.sleep(0.2)
        https = subprocess.run(["curl", "-sS", "--cacert", os.path.join(root, "config", "demo-tls.pem"),
                                "-H", "Authorization: Bearer demo-token-change-me", "-o", "/dev/null", "-w", "%{http_code}",
                                "https://localhost:8443/hello"], capture_output=True, text=True, timeout=20)
        assert https.stdout == "200", https.stderr
        example = os.path.join(root, "docs", "examples", "grpc_call.py")
        pinned = subprocess.run([sys.executable, example, "--version", "v2"], capture_output=True, text=True, timeout=20)
        assert pinned.stdout.startswith("OK from version v2: "), pinned.stdout + pinned.stderr
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        demo.wait(timeout=20)
        time.sleep(0.5)
        for port in (8001, 8002, 9001, 9002, 8080, 8443):
            with socket.socket() as probe:
                assert probe.connect_ex(("127.0.0.1", port)) != 0, f"something still listens on {port} after Ctrl-C"
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)


def test_connections_over_the_limit_get_503_and_are_counted(demo, proxy):
    backend = demo("v1")
    server = proxy([("v1", 100, [backend.address])], workers=1, extra={"limits": {"max_connections": 3}})
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]
    try:
        time.sleep(0.3)
        response = raw_exchange(server.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 503 "), response
        body = json.loads(response.split(b"\r\n\r\n", 1)[1])
        assert body["error"]["code"] == "too_many_connections"
        assert server.settled_status()["connections_refused_over_limit"] == 1
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    assert http_get(server.port, "/", auth())[0] == 200


def test_default_start_does_not_warn_about_max_connections(demo, proxy):
    backend = demo("v1")
    server = proxy([("v1", 100, [backend.address])])
    server.process.terminate()
    server.process.wait(timeout=20)
    assert "max_connections" not in server.log()


def test_a_port_taken_by_another_process_is_refused_unless_shared(demo, proxy, tmp_path):
    v1 = demo("v1")
    port = free_port()
    first = proxy([("v1", 100, [v1.address])], extra={"listeners": [{"address": f"127.0.0.1:{port}"}]})
    assert first.port == port
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    for name in ("versions.json", "tokens.txt"):
        (second_dir / name).write_bytes((tmp_path / name).read_bytes())
    config = {"listeners": [{"address": f"127.0.0.1:{port}"}], "admin": {"address": "127.0.0.1:0"},
              "auth": {"tokens_file": "tokens.txt"}}
    (second_dir / "switchyard.json").write_text(json.dumps(config))
    result = subprocess.run([BINARY, "serve", "--config", str(second_dir / "switchyard.json")],
                            capture_output=True, text=True, timeout=20)
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}: another process already listens there" in result.stderr
    assert "share_port" in result.stderr


def test_share_port_lets_two_instances_listen_on_purpose(demo, tmp_path):
    from harness import Proxy
    v1 = demo("v1")
    port = free_port()
    servers = []
    try:
        for name in ("a", "b"):
            directory = tmp_path / name
            directory.mkdir()
            servers.append(Proxy(str(directory), [("v1", 100, [v1.address])],
                                 extra={"listeners": [{"address": f"127.0.0.1:{port}", "share_port": True}]}))
        assert all(server.port == port for server in servers)
        assert http_get(port, "/", auth())[0] == 200
    finally:
        for server in servers:
            server.stop()


def test_an_endpoint_that_drops_connects_is_ejected_after_its_first_timeout(demo, proxy, started):
    """A listener whose accept queue is full drops SYNs, like a dead host: connects time out."""
    from harness import FullBacklogListener
    good = demo("v1")
    blackhole = FullBacklogListener()
    started.append(blackhole)
    dead = blackhole.address
    server = proxy([("v1", 100, [dead, good.address])], workers=1, extra={"timeouts": {"connect_ms": 500}})
    durations = []
    for _ in range(12):
        start = time.monotonic()
        status, headers, _ = http_get(server.port, "/", auth())
        durations.append(time.monotonic() - start)
        assert status == 200
    slow = [d for d in durations if d > 0.4]
    # Only the first request pays the connect timeout; the ejected endpoint is skipped for 1 s.
    assert len(slow) == 1, durations
    server.process.terminate()
    server.process.wait(timeout=20)
    server.wait_for_log(f"cannot connect to {dead}")


def test_a_name_that_does_not_resolve_leaves_its_endpoint_out(demo, proxy, tmp_path):
    good = demo("v1")
    # .invalid never resolves (RFC 6761); the dark version keeps one good endpoint.
    server = proxy([("v1", 100, [good.address]), ("dark", 0, ["gone.invalid:8000", good.address])])
    assert http_get(server.port, "/", auth({"X-ANYSCALE-VERSION": "dark"}))[0] == 200
    unresolved = server.status()["unresolved_endpoints"]
    assert len(unresolved) == 1 and 'version "dark": endpoint gone.invalid:8000' in unresolved[0]
    # A version with no endpoint that resolves cannot serve: that file is rejected.
    server.write_versions([("v1", 100, [good.address]), ("dark", 0, ["gone.invalid:8000"])])
    wait_until(lambda: server.status()["last_reload"]["errors"])
    assert 'version "dark" has no endpoint that resolves' in server.status()["last_reload"]["errors"][0]


def test_endpoint_names_are_resolved_again(proxy):
    """A name in /etc/hosts moves from one backend to another (a Ray cluster replaced behind a
    stable DNS name): requests follow within resolve_interval_ms, without a reload."""
    import os
    if os.geteuid() != 0 or not os.access("/etc/hosts", os.W_OK):
        pytest.skip("needs to edit /etc/hosts (root)")
    from harness import read_line_matching
    name = "switchyard-reresolve-test.internal"
    first = subprocess.Popen([BINARY, "demo-backend", "--name", "first", "--host", "127.0.0.2", "--port", "0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    backends = [first]
    with open("/etc/hosts") as f:
        original = f.read()
    try:
        port = int(read_line_matching(first, r"listening on \S+:(\d+)").group(1))
        second = subprocess.Popen([BINARY, "demo-backend", "--name", "second", "--host", "127.0.0.3", "--port", str(port)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        backends.append(second)
        read_line_matching(second, r"listening on")
        with open("/etc/hosts", "w") as f:  # in place: /etc/hosts may be a bind mount
            f.write(original.rstrip("\n") + f"\n127.0.0.2 {name}\n")
        server = proxy([("v1", 100, [f"{name}:{port}"])], extra={"resolve_interval_ms": 300})
        assert json.loads(http_get(server.port, "/", auth())[2])["version"] == "first"
        with open("/etc/hosts", "w") as f:
            f.write(original.rstrip("\n") + f"\n127.0.0.3 {name}\n")
        wait_until(lambda: json.loads(http_get(server.port, "/", auth())[2])["version"] == "second", what=lambda: server.status())
        generation = server.status()["generation"]
        time.sleep(1)
        assert server.status()["generation"] == generation, "unchanged addresses must not republish"
    finally:
        with open("/etc/hosts", "w") as f:
            f.write(original)
        for backend in backends:
            backend.kill()
            backend.wait()


def test_a_slow_dns_answer_does_not_stall_the_control_thread(demo, proxy, tmp_path):
    """A changed versions file naming a host whose DNS server does not answer: the names are
    resolved off the control thread, so /status and SIGHUP are served meanwhile, and the new
    file is published when the lookup gives up (the name left out, the version kept)."""
    import ctypes
    import os
    if os.geteuid() != 0:
        pytest.skip("needs a private mount namespace for /etc/resolv.conf (root)")
    silent_dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # takes queries, never answers
    try:
        silent_dns.bind(("127.0.0.77", 53))
    except OSError:
        pytest.skip("port 53 on 127.0.0.77 is not available")
    silent_dns.settimeout(0)
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.77\noptions timeout:3 attempts:1\n")

    def private_resolv_conf():
        libc = ctypes.CDLL(None, use_errno=True)
        clone_newns, ms_rec, ms_private, ms_bind = 0x20000, 0x4000, 0x40000, 0x1000
        if libc.unshare(clone_newns) != 0 or libc.mount(b"none", b"/", None, ms_rec | ms_private, None) != 0 \
                or libc.mount(str(resolv).encode(), b"/etc/resolv.conf", None, ms_bind, None) != 0:
            raise OSError(ctypes.get_errno(), "private /etc/resolv.conf")

    v1 = demo("v1")
    server = proxy([("v1", 100, [v1.address])], preexec_fn=private_resolv_conf)
    generation = server.status()["generation"]
    server.write_versions([("v1", 100, [v1.address, "no-answer.switchyard-test.example:8000"])])
    # Wait until the lookup is under way (the silent server got the query) ...
    deadline = time.monotonic() + 5
    while True:
        try:
            silent_dns.recv(512)
            break
        except BlockingIOError:
            assert time.monotonic() < deadline, "the proxy never asked the DNS server"
            time.sleep(0.02)
    # ... and the control thread still answers at once.
    started = time.monotonic()
    status = server.status()
    assert time.monotonic() - started < 0.5
    assert status["generation"] == generation, "not published before its names resolved"
    assert http_get(server.port, "/", auth())[0] == 200
    # The lookup gives up after 3 s: published with the name left out.
    wait_until(lambda: server.status()["generation"] != generation, timeout=10, what=lambda: server.log())
    status = server.status()
    assert any("no-answer.switchyard-test.example" in entry for entry in status["unresolved_endpoints"]), status
    assert status["last_reload"]["outcome"] == "ok"
    silent_dns.close()


def test_a_watch_queue_overflow_reloads_everything(demo, proxy, tmp_path):
    """The kernel drops file events once the watcher's queue is full and reports an overflow
    instead: the proxy must then re-read the hot files, or a change lost in the overflow would
    never be seen. The queue is made tiny for the proxy (max_queued_events is read when the
    proxy creates its watcher) and the proxy is paused while the directory fills it."""
    import os
    import signal
    limit_path = "/proc/sys/fs/inotify/max_queued_events"
    if os.geteuid() != 0 or not os.access(limit_path, os.W_OK):
        pytest.skip("needs to lower fs.inotify.max_queued_events (root)")
    v1, v2 = demo("v1"), demo("v2")
    with open(limit_path) as f:
        original = f.read()
    try:
        with open(limit_path, "w") as f:
            f.write("8\n")
        server = proxy([("v1", 100, [v1.address])])
    finally:
        with open(limit_path, "w") as f:
            f.write(original)
    generation = server.status()["generation"]
    server.process.send_signal(signal.SIGSTOP)
    try:
        for index in range(40):  # events for files the proxy does not care about fill the queue
            (tmp_path / f"noise-{index}").write_text("x")
        server.write_versions([("v2", 100, [v2.address])])  # its events are dropped
    finally:
        server.process.send_signal(signal.SIGCONT)
    wait_until(lambda: server.status()["generation"] != generation, what=lambda: "a change lost in the overflow was never read:\n" + server.log())
    assert json.loads(http_get(server.port, "/", auth())[2])["version"] == "v2"
    server.wait_for_log("overflowed")


def test_start_warns_about_the_demo_token_and_disabled_auth(demo, proxy):
    v1 = demo("v1")
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "config", "tokens.txt")) as f:
        demo_token = [line for line in f.read().splitlines() if line and not line.startswith("#")][0]
    exposed = proxy([("v1", 100, [v1.address])], tokens=(TOKEN, demo_token))
    open_auth = proxy([("v1", 100, [v1.address])], extra={"auth": {"disabled": True}})
    careful = proxy([("v1", 100, [v1.address])])
    for server in (exposed, open_auth, careful):
        assert http_get(server.port, "/", auth())[0] == 200  # started and serving
        server.stop()
    exposed.wait_for_log(f'contains the demo token "{demo_token}"')
    open_auth.wait_for_log("auth.disabled is set")
    assert "demo token" not in careful.log() and "auth.disabled" not in careful.log()
    assert "admin API listens on" not in careful.log(), "a loopback admin listener is not warned about"
