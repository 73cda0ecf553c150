"""Active health checks against real backends: endpoint and version states, the traffic of an
unhealthy version, Ray Serve's draining answer, and what /status and /metrics say."""
import http.client
import json

from harness import RecordingBackend, auth, http_get, wait_until
from test_metrics import scrape, value

# Fast checks so a test sees a verdict within a second: probes every 100 ms, two in a row decide.
FAST = {"path": "/-/healthz", "interval_ms": 100, "timeout_ms": 100, "healthy_threshold": 2, "unhealthy_threshold": 2}


def wait_for(server, predicate, what, timeout=10):
    """/status once `predicate` holds for it."""
    return wait_until(lambda: status if predicate(status := server.status()) else None, timeout,
                      what=lambda: f"{what}: {json.dumps(server.status(), indent=1)}")


def version_state(status, name):
    return next(v for v in status["versions"] if v["name"] == name)


def states(*pairs):
    """A predicate: each named version is in the given state."""
    return lambda status: all(version_state(status, name)["state"] == state for name, state in pairs)


def served_by(server, count, headers=None):
    """Sends `count` requests; returns how many each version served and the other answers."""
    served, failures = {}, []
    for _ in range(count):
        status, response_headers, body = http_get(server.port, "/", auth(headers))
        if status == 200:
            name = response_headers["x-anyscale-version"]
            served[name] = served.get(name, 0) + 1
        else:
            failures.append((status, body))
    return served, failures


def test_versions_start_with_ray_serve_defaults_and_run(recorder, proxy):
    v1 = recorder("v1")
    # No health_check anywhere: the defaults (Ray Serve's /-/healthz every 2 s) apply.
    server = proxy([("v1", 100, [v1.address])], extra={"health_check": None})
    status = wait_for(server, states(("v1", "RUNNING")), "v1 RUNNING")
    v1_status = version_state(status, "v1")
    assert v1_status["health_check"] == {"path": "/-/healthz", "interval_ms": 2000, "timeout_ms": 1000,
                                         "healthy_threshold": 2, "unhealthy_threshold": 2}
    assert v1_status["addresses"][0]["state"] == "HEALTHY" and v1_status["addresses"][0]["last_check"]
    assert v1_status["created_at"] and status["state"] == "RUNNING" and not status["fail_open"]
    assert v1.probes >= 1 and v1.requests == [], "probes are not relayed requests"
    assert "is HEALTHY" in server.wait_for_log('health: version "v1" endpoint')


def test_a_dead_endpoint_of_two_gets_no_requests_once_detected(recorder, proxy):
    a, b = recorder("v1"), recorder("v1")
    server = proxy([("v1", 100, [a.address, b.address], {"health_check": FAST})])
    wait_for(server, lambda s: all(e["state"] == "HEALTHY" for e in version_state(s, "v1")["addresses"]), "both HEALTHY")
    b.stop()
    status = wait_for(server, lambda s: version_state(s, "v1")["addresses"][1]["state"] == "UNHEALTHY", "b UNHEALTHY")
    assert version_state(status, "v1")["state"] == "RUNNING"
    assert version_state(status, "v1")["addresses"][1]["last_failure"].startswith("cannot connect")
    served, failures = served_by(server, 100)
    assert failures == [] and served == {"v1": 100}
    server.wait_for_log(f"endpoint {b.address} is UNHEALTHY")


def test_a_dead_version_s_share_goes_to_the_others_and_comes_back(recorder, proxy):
    v1, v2 = recorder("v1"), recorder("v2")
    server = proxy([("v1", 70, [v1.address], {"health_check": FAST}), ("v2", 30, [v2.address], {"health_check": FAST})])
    wait_for(server, states(("v1", "RUNNING"), ("v2", "RUNNING")), "both RUNNING")
    port = int(v2.address.rsplit(":", 1)[1])
    v2.stop()
    status = wait_for(server, states(("v2", "UNHEALTHY")), "v2 UNHEALTHY")
    assert [v["effective_traffic_percent"] for v in status["versions"]] == [100, 0]
    assert [v["traffic_percent"] for v in status["versions"]] == [70, 30]
    assert status["state"] == "UNHEALTHY"

    served, failures = served_by(server, 200)
    assert failures == [] and served == {"v1": 200}
    status_code, headers, body = http_get(server.port, "/", auth({"X-ANYSCALE-VERSION": "v2"}))
    assert status_code == 503 and headers["x-anyscale-version"] == "v2" and "retry-after" in headers
    error = json.loads(body)["error"]
    assert error["code"] == "version_unavailable" and "v2" in error["message"] and "v1" in error["message"]

    revived = RecordingBackend("v2", port=port)
    try:
        status = wait_for(server, states(("v2", "RUNNING")), "v2 RUNNING again")
        assert [v["effective_traffic_percent"] for v in status["versions"]] == [70, 30]
        served, failures = served_by(server, 200)
        assert failures == [] and 30 <= served.get("v2", 0) <= 95, served
    finally:
        revived.stop()
    log = server.wait_for_log('version "v2" is RUNNING')
    assert 'version "v2" is UNHEALTHY' in log
    assert "effective weights v1=100% v2=0%" in log


def test_a_draining_node_takes_no_new_requests_and_its_stream_completes(recorder, proxy):
    a, b = recorder("a"), recorder("b")
    server = proxy([("v1", 100, [a.address, b.address], {"health_check": FAST})])
    wait_for(server, lambda s: all(e["state"] == "HEALTHY" for e in version_state(s, "v1")["addresses"]), "both HEALTHY")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/stream?events=30", headers=auth())
    response = conn.getresponse()
    assert response.status == 200
    streaming = a if any(r["path"].startswith("/stream") for r in a.requests) else b
    other = b if streaming is a else a
    streaming.healthz = "draining"
    wait_for(server, lambda s: "DRAINING" in [e["state"] for e in version_state(s, "v1")["addresses"]], "DRAINING")
    before = len(streaming.requests)
    served, failures = served_by(server, 50)
    assert failures == [] and served == {"v1": 50}
    assert len(streaming.requests) == before, "a draining node gets no new request"
    assert len(other.requests) >= 50
    body = response.read()
    assert body.count(b"data: ") == 30, "the stream that was running finishes"
    conn.close()
    server.wait_for_log("is DRAINING (answered 503 This node is being drained.)")


def test_fail_policy_answers_the_share_with_503(recorder, proxy):
    v1, v2 = recorder("v1"), recorder("v2")
    server = proxy([("v1", 50, [v1.address], {"health_check": FAST}),
                    ("v2", 50, [v2.address], {"health_check": FAST, "on_unhealthy": "fail"})])
    wait_for(server, states(("v1", "RUNNING"), ("v2", "RUNNING")), "both RUNNING")
    v2.stop()
    status = wait_for(server, states(("v2", "UNHEALTHY")), "v2 UNHEALTHY")
    assert [v["effective_traffic_percent"] for v in status["versions"]] == [50, 0]
    served, failures = served_by(server, 200)
    assert 50 <= len(failures) <= 150 and served["v1"] == 200 - len(failures), (served, len(failures))
    assert {code for code, _ in failures} == {503}
    assert all(json.loads(body)["error"]["code"] == "version_unavailable" for _, body in failures)


def test_fallback_policy_sends_the_share_to_its_version(recorder, proxy):
    v1, v2, stable = recorder("v1"), recorder("v2"), recorder("stable")
    server = proxy([("v1", 50, [v1.address], {"health_check": FAST}),
                    ("v2", 50, [v2.address], {"health_check": FAST, "on_unhealthy": {"fallback": "stable"}}),
                    ("stable", 0, [stable.address], {"health_check": FAST})])
    wait_for(server, states(("v1", "RUNNING"), ("v2", "RUNNING"), ("stable", "RUNNING")), "all RUNNING")
    v2.stop()
    status = wait_for(server, states(("v2", "UNHEALTHY")), "v2 UNHEALTHY")
    assert [v["effective_traffic_percent"] for v in status["versions"]] == [50, 0, 50]
    served, failures = served_by(server, 200)
    assert failures == [] and set(served) == {"v1", "stable"} and served["stable"] >= 50, served


def test_every_version_unhealthy_fails_open(recorder, proxy):
    v1, v2 = recorder("v1"), recorder("v2")
    server = proxy([("v1", 70, [v1.address], {"health_check": FAST}), ("v2", 30, [v2.address], {"health_check": FAST})])
    wait_for(server, states(("v1", "RUNNING"), ("v2", "RUNNING")), "both RUNNING")
    v1.stop()
    v2.stop()
    status = wait_for(server, lambda s: s["fail_open"], "fail open")
    assert [v["effective_traffic_percent"] for v in status["versions"]] == [70, 30]
    # Routed anyway: the answer is the backend's failure (502), not a refusal (503).
    assert http_get(server.port, "/", auth({"X-ANYSCALE-VERSION": "v2"}))[0] == 502
    server.wait_for_log("fail open")


def test_metrics_show_health_states_and_effective_weights(recorder, proxy):
    v1, v2 = recorder("v1"), recorder("v2")
    server = proxy([("v1", 70, [v1.address], {"health_check": FAST}), ("v2", 30, [v2.address], {"health_check": FAST})])
    wait_for(server, states(("v1", "RUNNING"), ("v2", "RUNNING")), "both RUNNING")
    v2.stop()
    wait_for(server, states(("v2", "UNHEALTHY")), "v2 UNHEALTHY")
    samples = scrape(server)
    assert value(samples, "switchyard_version_state", version="v2", state="UNHEALTHY") == 1
    assert value(samples, "switchyard_version_state", version="v2", state="RUNNING") == 0
    assert value(samples, "switchyard_version_state", version="v1", state="RUNNING") == 1
    assert value(samples, "switchyard_version_weight", version="v2", kind="configured") == 30
    assert value(samples, "switchyard_version_weight", version="v2", kind="effective") == 0
    assert value(samples, "switchyard_version_weight", version="v1", kind="effective") == 100
    assert value(samples, "switchyard_endpoint_health", version="v2", endpoint=v2.address, state="UNHEALTHY") == 1
    assert value(samples, "switchyard_endpoint_health", version="v1", endpoint=v1.address, state="HEALTHY") == 1
    assert value(samples, "switchyard_fail_open") == 0


def test_a_stalled_health_endpoint_times_out(proxy):
    import socket
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts connections (the kernel does) but never answers
    try:
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        server = proxy([("v1", 100, [address], {"health_check": FAST})])
        status = wait_for(server, states(("v1", "UNHEALTHY")), "v1 UNHEALTHY")
        assert version_state(status, "v1")["addresses"][0]["last_failure"] == "no answer within 100 ms"
    finally:
        silent.close()


def test_retry_other_version_serves_a_request_whose_version_is_unreachable(recorder, proxy):
    from test_lifecycle import free_port
    v2 = recorder("v2")
    dead = f"127.0.0.1:{free_port()}"
    # No health checks: the dead version is found out by the requests themselves.
    server = proxy([("v1", 50, [dead]), ("v2", 50, [v2.address])], extra={"retry_other_version": True})
    served, failures = served_by(server, 100)
    assert failures == [] and served == {"v2": 100}, "the response names the version that served it"
    assert http_get(server.port, "/", auth({"X-ANYSCALE-VERSION": "v1"}))[0] == 502, "a pinned request is not moved"
    status = server.settled_status()
    assert status["exchanges"]["retries"] >= 20 and status["exchanges"]["completed"] == 100
    assert [v["retry_other_version"] for v in status["versions"]] == [True, True]


def test_retry_other_version_is_per_version(recorder, proxy):
    from test_lifecycle import free_port
    v2 = recorder("v2")
    dead = f"127.0.0.1:{free_port()}"
    server = proxy([("v1", 50, [dead], {"retry_other_version": False}), ("v2", 50, [v2.address])],
                   extra={"retry_other_version": True})
    served, failures = served_by(server, 60)
    assert failures and {code for code, _ in failures} == {502} and set(served) == {"v2"}


def test_switchyard_status_prints_the_service_as_yaml(recorder, proxy):
    import subprocess
    import yaml
    from harness import BINARY
    v1, v2 = recorder("v1"), recorder("v2")
    server = proxy([("v1", 70, [v1.address], {"health_check": FAST}), ("v2", 30, [v2.address], {"health_check": FAST})])
    wait_for(server, states(("v1", "RUNNING"), ("v2", "RUNNING")), "both RUNNING")
    v2.stop()
    wait_for(server, states(("v2", "UNHEALTHY")), "v2 UNHEALTHY")
    # The admin address comes from the config file unless given.
    result = subprocess.run([BINARY, "status", "--config", server.config_path, "--admin", f"127.0.0.1:{server.admin_port}"],
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    document = yaml.safe_load(result.stdout)
    assert document["name"] == "test" and document["state"] == "UNHEALTHY"
    by_name = {version["name"]: version for version in document["versions"]}
    assert by_name["v1"]["state"] == "RUNNING" and by_name["v1"]["weight"] == 70 and by_name["v1"]["effective_weight"] == 100
    assert by_name["v2"]["state"] == "UNHEALTHY" and by_name["v2"]["effective_weight"] == 0
    assert by_name["v2"]["id"] == "test/v2" and by_name["v2"]["created_at"]
    assert by_name["v2"]["endpoints"][0]["state"] == "UNHEALTHY" and by_name["v2"]["endpoints"][0]["last_failure"]
    raw = subprocess.run([BINARY, "status", "--json", "--admin", f"127.0.0.1:{server.admin_port}"],
                         capture_output=True, text=True, timeout=20)
    assert json.loads(raw.stdout)["service"] == "test"
    down = subprocess.run([BINARY, "status", "--admin", "127.0.0.1:1"], capture_output=True, text=True, timeout=20)
    assert down.returncode != 0 and "cannot reach the admin API at 127.0.0.1:1" in down.stderr
