"""Budgets that keep one failing part from costing everything: the connect budget per request,
and the descriptor budget shared by client and backend sockets."""
import contextlib
import json
import time

import pytest

from harness import TOKEN, SynDroppingListener, http_get


def auth():
    return {"Authorization": f"Bearer {TOKEN}"}


def timed_get(port, path="/"):
    started = time.monotonic()
    status, _, body = http_get(port, path, auth())
    return status, body, time.monotonic() - started


def test_endpoints_that_drop_syns_cost_a_request_at_most_three_connects(proxy):
    with contextlib.ExitStack() as stack:
        dead = [stack.enter_context(SynDroppingListener()).address for _ in range(8)]
        server = proxy([("v1", 100, dead)], extra={"timeouts": {"connect_ms": 500}})
        # Before: 8 x 500 ms for each request. Now 3 endpoints at most, whether they are
        # ejected (tried one only, when nothing else is left) or not.
        for attempt in range(5):
            status, body, elapsed = timed_get(server.port)
            assert status in (502, 504), (status, body)
            assert elapsed < 2.0, f"request {attempt} took {elapsed:.2f} s"


def test_max_connect_attempts_is_configurable_and_a_live_endpoint_is_still_found(proxy, demo):
    with contextlib.ExitStack() as stack:
        dead = [stack.enter_context(SynDroppingListener()).address for _ in range(3)]
        live = demo("v1").address
        server = proxy([("v1", 100, dead + [live])],
                       extra={"timeouts": {"connect_ms": 300}, "limits": {"max_connect_attempts": 4}})
        # The live endpoint is the least loaded once the dead ones hang: every request ends 200.
        for _ in range(4):
            status, body, elapsed = timed_get(server.port, "/hello")
            assert status == 200, body
            assert elapsed < 1.5
        status, _, body = http_get(server.admin_port, "/status")
        assert status == 200


def test_one_attempt_only_when_asked(proxy):
    with contextlib.ExitStack() as stack:
        dead = [stack.enter_context(SynDroppingListener()).address for _ in range(4)]
        server = proxy([("v1", 100, dead)], extra={"timeouts": {"connect_ms": 400}, "limits": {"max_connect_attempts": 1}})
        status, body, elapsed = timed_get(server.port)
        assert status in (502, 504) and 0.3 < elapsed < 0.9, (status, elapsed)
        assert json.loads(body)["error"]["code"] in ("upstream_connect_failed", "upstream_timeout")


class SlowBackend:
    """Answers each request after `delay` seconds, one thread per connection."""

    def __init__(self, delay):
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path != "/-/healthz":
                    time.sleep(delay)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 1024  # the listen backlog: a burst of connects is not dropped
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def low_descriptor_limit():
    import resource
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


@pytest.mark.parametrize("connect_ms", [4000, 300])
def test_streams_beyond_the_descriptor_budget_wait_and_nothing_is_blamed(started, proxy, demo, connect_ms):
    """256 descriptors, 2 workers: 3 HTTP/2 connections with 100 slow streams (1 s each) want
    300 backend sockets. Streams over the budget wait; with timeouts.connect_ms 4000 all are
    served, with 300 those that waited that long get 503. None gets a 502, no version turns
    UNHEALTHY, and an HTTP/1.1 client of another version is answered at once."""
    import threading
    from h2client import H2Client
    slow = SlowBackend(delay=1.0)
    started.append(slow)
    other = demo("v2")
    health = {"interval_ms": 300, "timeout_ms": 300, "path": "/-/healthz", "unhealthy_threshold": 2}
    server = proxy([("v1", 100, [slow.address]), ("v2", 0, [other.address])], preexec_fn=low_descriptor_limit,
                   extra={"health_check": health, "timeouts": {"connect_ms": connect_ms}})
    results, unrelated = [], []

    def streams():
        client = H2Client(server.port)
        ids = [client.request("/slow", headers={"authorization": f"Bearer {TOKEN}"}) for _ in range(100)]
        results.extend(client.wait(ids, timeout=60))
        client.close()

    def probe_other():
        for _ in range(10):
            started_at = time.monotonic()
            status, _, _ = http_get(server.port, "/hello", {**auth(), "X-ANYSCALE-VERSION": "v2"})
            unrelated.append((status, time.monotonic() - started_at))
            time.sleep(0.2)

    clients = [threading.Thread(target=streams) for _ in range(3)]
    for client in clients:
        client.start()
    time.sleep(0.5)
    probe_other()
    for client in clients:
        client.join(timeout=90)
    statuses = [int(r.headers.get(":status", 0)) if not r.reset else "reset" for r in results]
    assert len(statuses) == 300
    assert 502 not in statuses and "reset" not in statuses, {s: statuses.count(s) for s in set(statuses)}
    counts = {s: statuses.count(s) for s in set(statuses)}
    if connect_ms == 4000:
        assert counts == {200: 300}, counts
    else:
        assert set(counts) == {200, 503} and counts[200] >= 90, counts
    assert all(status == 200 and elapsed < 1.0 for status, elapsed in unrelated), unrelated
    versions = server.status()["versions"]
    assert all(v["state"] != "UNHEALTHY" for v in versions), versions
    metrics = http_get(server.admin_port, "/metrics")[2].decode()
    budget = next(int(line.split()[-1]) for line in metrics.splitlines() if line.startswith("switchyard_descriptor_budget "))
    assert budget == 256 - 64
    waits = next(int(line.split()[-1]) for line in metrics.splitlines() if line.startswith("switchyard_descriptor_waits_total "))
    assert waits > 0
