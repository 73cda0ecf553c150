"""The JSON access log: one line per finished exchange, every field valid, no token anywhere;
rotation by rename + SIGUSR1; a destination that blocks drops lines instead of slowing traffic."""
import json
import os
import re
import signal
import time

from harness import TOKEN, auth, http_get, raw_exchange
from test_metrics import scrape, value

FIELDS = {"time", "request_id", "client", "method", "path", "protocol", "status", "grpc_status", "version", "route", "endpoint",
          "attempts", "connect_ms", "first_byte_ms", "total_ms", "bytes_to_backend", "bytes_to_client", "error", "worker"}


def read_lines(path, count, timeout=5):
    """The log's lines once there are `count` of them (workers hand lines over every 100 ms)."""
    deadline = time.time() + timeout
    while True:
        lines = open(path).read().splitlines() if os.path.exists(path) else []
        if len(lines) >= count or time.time() > deadline:
            return [json.loads(line) for line in lines]
        time.sleep(0.05)


def test_one_valid_line_per_request_and_no_token(demo, proxy, tmp_path):
    v1, v2 = demo("v1"), demo("v2")
    log_path = tmp_path / "access.log"
    server = proxy([("v1", 50, [v1.address]), ("v2", 50, [v2.address])], extra={"access_log": {"path": "access.log"}})
    sent = 0
    for index in range(30):
        assert http_get(server.port, f"/items/{index}?token={TOKEN}", auth())[0] == 200
        sent += 1
    assert http_get(server.port, "/pinned", auth({"X-ANYSCALE-VERSION": "v2", "X-Request-Id": "abc-123"}))[0] == 200
    assert http_get(server.port, "/status/503", auth({"X-ANYSCALE-VERSION": "v1"}))[0] == 503
    assert http_get(server.port, "/denied", {"Authorization": "Bearer wrong-token"})[0] == 401
    assert raw_exchange(server.port, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
    sent += 4
    lines = read_lines(log_path, sent)
    assert len(lines) == sent
    for line in lines:
        assert set(line) == FIELDS, line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
        assert line["client"] == "127.0.0.1" and line["worker"] in (0, 1)
        assert line["total_ms"] is None or line["total_ms"] >= 0
    by_path = {line["path"]: line for line in lines}
    first = by_path["/items/0"]
    assert first["status"] == 200 and first["method"] == "GET" and first["protocol"] == "HTTP/1.1"
    assert first["grpc_status"] is None
    assert first["route"] == "weighted" and first["version"] in ("v1", "v2") and first["attempts"] == 1
    assert first["endpoint"] in (v1.address, v2.address) and first["error"] is None
    assert re.fullmatch(r"[0-9a-f]{32}", first["request_id"])
    assert first["first_byte_ms"] >= 0 and first["bytes_to_backend"] > 0 and first["bytes_to_client"] > 0
    assert by_path["/pinned"]["route"] == "pinned" and by_path["/pinned"]["version"] == "v2"
    assert by_path["/pinned"]["request_id"] == "abc-123"
    assert by_path["/status/503"]["status"] == 503 and by_path["/status/503"]["error"] is None, "a backend's 503 is no proxy error"
    assert by_path["/denied"]["status"] == 401 and by_path["/denied"]["error"] == "invalid_token"
    assert by_path["/denied"]["version"] is None
    malformed = [line for line in lines if line["status"] == 400]
    assert len(malformed) == 1 and malformed[0]["error"] == "bad_request"
    served = {"v1": 0, "v2": 0}
    for line in lines:
        if line["status"] == 200 and line["route"] == "weighted":
            served[line["version"]] += 1
    assert served["v1"] + served["v2"] == 30
    # The query is off by default, and neither log holds a token.
    everything = log_path.read_text() + server.log()
    assert "?token" not in everything and TOKEN not in everything and "wrong-token" not in everything


def test_rotation_by_rename_and_sigusr1(demo, proxy, tmp_path):
    v1 = demo("v1")
    server = proxy([("v1", 100, [v1.address])], extra={"access_log": {"path": "access.log", "query": True}})
    for _ in range(5):
        assert http_get(server.port, "/before?x=1", auth())[0] == 200
    assert len(read_lines(tmp_path / "access.log", 5)) == 5
    os.rename(tmp_path / "access.log", tmp_path / "access.log.1")
    server.process.send_signal(signal.SIGUSR1)
    deadline = time.time() + 5
    while not (tmp_path / "access.log").exists() and time.time() < deadline:
        time.sleep(0.02)
    for _ in range(3):
        assert http_get(server.port, "/after", auth())[0] == 200
    rotated = read_lines(tmp_path / "access.log.1", 5)
    fresh = read_lines(tmp_path / "access.log", 3)
    assert [line["path"] for line in rotated] == ["/before?x=1"] * 5, "query logged when asked"
    assert [line["path"] for line in fresh] == ["/after"] * 3
    server.wait_for_log("reopened (SIGUSR1)")


def test_a_blocked_destination_drops_lines_and_traffic_goes_on(demo, proxy, tmp_path):
    v1 = demo("v1")
    fifo = tmp_path / "access.fifo"
    os.mkfifo(fifo)
    # A reader that never reads: the pipe fills (64 KiB) and every write then blocks.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        server = proxy([("v1", 100, [v1.address])], workers=1, extra={"access_log": {"path": str(fifo)}})
        started = time.time()
        failures = 0
        requests = 0
        # Enough lines to fill the pipe and every block (4 × 256 KiB) many times over.
        stop = time.time() + 8
        while time.time() < stop and requests < 30000:
            status, _, _ = http_get(server.port, "/" + "p" * 200, auth())
            failures += status != 200
            requests += 1
        elapsed = time.time() - started
        assert failures == 0
        samples = scrape(server)
        dropped = value(samples, "switchyard_access_log_dropped_total")
        assert dropped > 0, "lines beyond what the pipe and blocks hold are dropped and counted"
        # The worker never waited for the log: requests kept flowing at their usual pace.
        assert requests / elapsed > 200, (requests, elapsed)
        assert http_get(server.port, "/", auth())[0] == 200
    finally:
        os.close(reader)


def test_sampling_keeps_every_error(demo, proxy, tmp_path):
    v1 = demo("v1")
    server = proxy([("v1", 100, [v1.address])], extra={"access_log": {"path": "access.log", "sample_percent": 10}})
    for _ in range(200):
        assert http_get(server.port, "/ok", auth())[0] == 200
    for _ in range(20):
        assert http_get(server.port, "/status/502", auth())[0] == 502
    time.sleep(0.5)
    lines = read_lines(tmp_path / "access.log", 0)
    assert sum(1 for line in lines if line["status"] == 502) == 20
    assert 2 <= sum(1 for line in lines if line["status"] == 200) <= 50


def test_a_bad_access_log_path_stops_the_start_with_a_clear_error(tmp_path, demo):
    import subprocess
    from harness import BINARY, versions_json
    v1 = demo("v1")
    (tmp_path / "versions.json").write_text(versions_json([("v1", 100, [v1.address])]))
    (tmp_path / "tokens.txt").write_text("t\n")
    (tmp_path / "switchyard.json").write_text(json.dumps({
        "listeners": [{"address": "127.0.0.1:0"}], "admin": {"address": "127.0.0.1:0"},
        "auth": {"tokens_file": "tokens.txt"}, "access_log": {"path": "no-such-dir/access.log"}}))
    result = subprocess.run([BINARY, "serve", "--config", str(tmp_path / "switchyard.json")],
                            capture_output=True, text=True, timeout=20)
    assert result.returncode != 0
    assert "access_log.path" in result.stderr and "no-such-dir/access.log" in result.stderr, result.stderr
