"""GET /metrics: per-version counters and histograms, read by Prometheus' own parser."""
import time

from prometheus_client.parser import text_string_to_metric_families

from harness import auth, http_get, wait_until


def scrape(server):
    """The /metrics page once the workers' counters caught up (copied out every 100 ms)."""
    time.sleep(0.25)
    status, headers, body = http_get(server.admin_port, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0)


def test_metrics_count_every_request_per_version(demo, proxy):
    v1, v2 = demo("v1"), demo("v2")
    server = proxy([("v1", 70, [v1.address]), ("v2", 30, [v2.address])])
    served = {"v1": 0, "v2": 0}
    for _ in range(40):
        status, headers, _ = http_get(server.port, "/", auth())
        assert status == 200
        served[headers["x-anyscale-version"]] += 1
    for _ in range(3):
        assert http_get(server.port, "/status/503", auth({"X-ANYSCALE-VERSION": "v2"}))[0] == 503
    for _ in range(2):
        assert http_get(server.port, "/")[0] == 401
    assert http_get(server.port, "/", auth({"X-ANYSCALE-VERSION": "v9"}))[0] == 404

    samples = scrape(server)
    for version in ("v1", "v2"):
        assert value(samples, "switchyard_requests_total", version=version, route="weighted", code="200") == served[version]
        assert value(samples, "switchyard_request_duration_seconds_count", version=version) == served[version] + (3 if version == "v2" else 0)
        assert value(samples, "switchyard_requests_in_flight", version=version) == 0
        assert value(samples, "switchyard_bytes_total", version=version, direction="to_client") > served[version] * 100
    assert value(samples, "switchyard_requests_total", version="v2", route="pinned", code="503") == 3
    assert value(samples, "switchyard_requests_total", version="", route="weighted", code="401") == 2
    assert value(samples, "switchyard_requests_total", version="", route="weighted", code="404") == 1
    assert value(samples, "switchyard_proxy_errors_total", version="", kind="missing_token") == 2
    assert value(samples, "switchyard_proxy_errors_total", version="", kind="unknown_version") == 1
    assert value(samples, "switchyard_version_weight", version="v1", kind="configured") == 70
    assert value(samples, "switchyard_config_generation") == server.status()["generation"]
    # Buckets are cumulative and end at the count; a first byte was seen for every answer.
    buckets = sorted(((float(dict(labels)["le"]), count) for (name, labels), count in samples.items()
                      if name == "switchyard_request_duration_seconds_bucket" and dict(labels)["version"] == "v1"))
    assert [count for _, count in buckets] == sorted(count for _, count in buckets)
    assert buckets[-1] == (float("inf"), served["v1"])
    assert value(samples, "switchyard_upstream_response_first_byte_seconds_count", version="v1") == served["v1"]


def test_metrics_keep_a_removed_versions_counts_and_survive_reloads(demo, proxy):
    v1 = demo("v1")
    server = proxy([("v1", 100, [v1.address]), ("old", 0, [v1.address])])
    for _ in range(4):
        assert http_get(server.port, "/", auth({"X-ANYSCALE-VERSION": "old"}))[0] == 200
    server.write_versions([("v1", 100, [v1.address])])
    wait_until(lambda: server.status()["generation"] != 1)
    assert http_get(server.port, "/", auth())[0] == 200
    samples = scrape(server)
    assert value(samples, "switchyard_requests_total", version="old", route="pinned", code="200") == 4
    assert value(samples, "switchyard_requests_total", version="v1", route="weighted", code="200") == 1
    assert ("switchyard_version_weight", (("kind", "configured"), ("version", "old"))) not in samples, "no longer configured"


def test_reloads_are_counted_per_file_and_result(demo, proxy):
    v1 = demo("v1")
    server = proxy([("v1", 100, [v1.address])])
    server.write_versions('{"service": "test", "versions": [}')
    deadline = time.monotonic() + 5
    while server.status()["last_reload"]["outcome"] != "error":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    samples = scrape(server)
    # The first read of a bad file is read again after 100 ms before it counts: one error.
    assert value(samples, "switchyard_reloads_total", file="versions", result="error") == 1
    assert value(samples, "switchyard_reloads_total", file="tokens", result="unchanged") == 1
    server.write_versions([("v1", 100, [v1.address]), ("v2", 0, [v1.address])])
    while server.status()["generation"] == 1:
        assert time.monotonic() < deadline + 5
        time.sleep(0.02)
    samples = scrape(server)
    assert value(samples, "switchyard_reloads_total", file="versions", result="ok") == 1
    assert value(samples, "switchyard_reloads_total", file="tokens", result="unchanged") == 2
    assert value(samples, "switchyard_reload_failures_total") == 1


def test_connect_failures_are_counted_per_endpoint(demo, proxy):
    from test_lifecycle import free_port
    v1 = demo("v1")
    dead = f"127.0.0.1:{free_port()}"
    server = proxy([("v1", 100, [dead, v1.address])], workers=1)
    for _ in range(5):
        assert http_get(server.port, "/", auth())[0] == 200
    samples = scrape(server)
    # The refused endpoint is tried once, then ejected for a second: one failure, one retry.
    assert value(samples, "switchyard_upstream_connect_failures_total", version="v1", endpoint=dead) == 1
    assert ("switchyard_upstream_connect_failures_total", (("endpoint", v1.address), ("version", "v1"))) not in samples
    assert value(samples, "switchyard_upstream_retries_total") == 1
