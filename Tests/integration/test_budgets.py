"""Budgets that keep one failing part from costing everything: the connect budget per request,
and the descriptor budget shared by client and backend sockets."""
import contextlib
import json
import time

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
