"""Weighted split, pinning, dark versions and authentication through the real proxy."""
import http.client
import json
import math
import threading

from harness import TOKEN, auth, http_get


def count_versions(port, total, headers, connections=4):
    """Sends `total` requests over keep-alive connections; counts X-ANYSCALE-VERSION values."""
    counts = {}
    lock = threading.Lock()

    def worker(n):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        local = {}
        for _ in range(n):
            connection.request("GET", "/split", headers=headers)
            response = connection.getresponse()
            body = json.loads(response.read())
            version = response.getheader("X-ANYSCALE-VERSION")
            assert response.status == 200
            assert body["version"] == version, "the header must name the version that served"
            local[version] = local.get(version, 0) + 1
        connection.close()
        with lock:
            for version, count in local.items():
                counts[version] = counts.get(version, 0) + count

    threads = [threading.Thread(target=worker, args=(total // connections,)) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts


def test_split_30_70_is_within_binomial_noise(demo, proxy):
    v1, v2 = demo("v1"), demo("v2")
    server = proxy([("v1", 30, [v1.address]), ("v2", 70, [v2.address])])
    total = 20000
    counts = count_versions(server.port, total, auth())
    assert sum(counts.values()) == total
    sigma = math.sqrt(total * 0.3 * 0.7)
    assert abs(counts.get("v1", 0) - 0.3 * total) <= 4 * sigma, counts


def test_pinned_requests_always_reach_their_version_and_dark_gets_only_pinned(demo, proxy):
    v1, v2, dark = demo("v1"), demo("v2"), demo("dark")
    server = proxy([("v1", 50, [v1.address]), ("v2", 50, [v2.address]), ("dark", 0, [dark.address])])
    unpinned = count_versions(server.port, 2000, auth())
    assert "dark" not in unpinned and set(unpinned) == {"v1", "v2"}, unpinned
    for name in ("v1", "v2", "dark"):
        pinned = count_versions(server.port, 400, auth({"X-ANYSCALE-VERSION": name}))
        assert pinned == {name: 400}
    # The header name is case-insensitive and the value is trimmed.
    status, headers, _ = http_get(server.port, "/", auth({"x-anyscale-version": "  dark "}))
    assert status == 200 and headers["x-anyscale-version"] == "dark"


def test_unknown_version_gets_404_naming_only_weighted_versions(demo, proxy):
    v1 = demo("v1")
    server = proxy([("v1", 100, [v1.address]), ("secret-canary", 0, [v1.address])])
    status, headers, body = http_get(server.port, "/", auth({"X-ANYSCALE-VERSION": "v9"}))
    assert status == 404
    error = json.loads(body)["error"]
    assert error["code"] == "unknown_version"
    assert "v9" in error["message"] and "v1" in error["message"]
    assert "secret-canary" not in error["message"], "a dark version must not be listed to any caller"
    assert headers["content-type"] == "application/json"


def test_missing_or_wrong_token_gets_401_and_backend_sees_nothing(recorder, proxy):
    backend = recorder()
    server = proxy([("v1", 100, [backend.address])], tokens=(TOKEN, "second-token"))
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": "Bearer"}):
        status, response_headers, body = http_get(server.port, "/secret", headers)
        assert status == 401, headers
        assert response_headers["www-authenticate"].startswith("Bearer")
        assert json.loads(body)["error"]["code"] == "unauthorized"
    assert backend.requests == []
    # Both tokens of a rotation work; Authorization is not forwarded by default.
    for token in (TOKEN, "second-token"):
        status, _, _ = http_get(server.port, "/ok", {"Authorization": f"Bearer {token}"})
        assert status == 200
    assert [r["path"] for r in backend.requests] == ["/ok", "/ok"]
    assert all("authorization" not in r["headers"] for r in backend.requests)


def test_forwarding_headers(recorder, proxy):
    backend = recorder()
    server = proxy([("v1", 100, [backend.address])])
    status, headers, _ = http_get(server.port, "/fwd", auth({
        "X-Forwarded-For": "10.1.2.3", "Connection": "close, X-Hop", "X-Hop": "secret", "Keep-Alive": "timeout=5",
        "X-Forwarded-Proto": "https"}))
    assert status == 200
    seen = backend.requests[-1]["headers"]
    assert seen["x-forwarded-for"] == "10.1.2.3, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == f"127.0.0.1:{server.port}"
    assert "x-hop" not in seen and "keep-alive" not in seen and "connection" not in seen
    assert len(seen["x-request-id"]) == 32
    assert headers["x-request-id"] == seen["x-request-id"], "the generated request id is returned to the client"
    # A client's own request id is kept.
    http_get(server.port, "/fwd", auth({"X-Request-Id": "abc-123"}))
    assert backend.requests[-1]["headers"]["x-request-id"] == "abc-123"
