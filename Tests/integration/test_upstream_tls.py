"""TLS to backends (Python `ssl` servers with a test CA made by the openssl CLI during the run)
and per-version upstream tokens."""
import json
import os
import subprocess
import time

from harness import TOKEN, RecordingBackend, auth, http_get, wait_until


def make_ca(directory):
    """A test certificate authority: (cert, key)."""
    cert, key = os.path.join(directory, "ca.pem"), os.path.join(directory, "ca.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=Switchyard test CA"],
                   check=True, capture_output=True)
    return cert, key


def issue(directory, ca, name, sans):
    """A certificate for `sans` (e.g. "DNS:backend.test,IP:127.0.0.1") signed by `ca`: (cert, key)."""
    cert, key, request = (os.path.join(directory, f"{name}{suffix}") for suffix in (".pem", ".key", ".csr"))
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", request, "-subj", f"/CN={name}"], check=True, capture_output=True)
    extensions = os.path.join(directory, f"{name}.ext")
    with open(extensions, "w") as f:
        f.write(f"subjectAltName={sans}\n")
    subprocess.run(["openssl", "x509", "-req", "-in", request, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
                    "-out", cert, "-days", "2", "-extfile", extensions], check=True, capture_output=True)
    return cert, key


def https_backend(started, tmp_path, name="v1", sans="DNS:backend.test,IP:127.0.0.1"):
    ca = make_ca(str(tmp_path))
    backend = RecordingBackend(name, tls=issue(str(tmp_path), ca, "backend", sans))
    started.append(backend)
    return backend, ca


def error_of(response):
    status, _, body = response
    return status, json.loads(body)["error"]


def test_https_endpoint_verified_with_ca_file_and_sessions_resumed(started, proxy, tmp_path):
    backend, _ = https_backend(started, tmp_path)
    port = backend.address.split(":")[1]
    server = proxy([("v1", 100, [f"https://127.0.0.1:{port}"], {"tls": {"ca_file": "ca.pem"}})], workers=1)
    status, headers, body = http_get(server.port, "/hello", auth())
    assert status == 200, body
    assert json.loads(body) == {"version": "v1", "path": "/hello"}
    assert headers["x-anyscale-version"] == "v1"
    # Pooled: a second request reuses the TLS connection.
    assert http_get(server.port, "/again", auth())[0] == 200
    assert backend.handshakes == [False], "one TLS connection for two requests"
    # A backend that closes after each response: every request reconnects, with the session resumed.
    backend.close_each = True
    for index in range(3):
        assert http_get(server.port, f"/close/{index}", auth())[0] == 200
    assert len(backend.handshakes) >= 3
    assert all(backend.handshakes[1:]), f"reconnects resume the TLS session: {backend.handshakes}"


def test_server_name_is_sent_and_checked(started, proxy, tmp_path):
    backend, _ = https_backend(started, tmp_path, sans="DNS:backend.test")
    port = backend.address.split(":")[1]
    # The certificate names backend.test, not 127.0.0.1: refused with the reason…
    server = proxy([("v1", 100, [f"https://127.0.0.1:{port}"], {"tls": {"ca_file": "ca.pem"}})])
    status, error = error_of(http_get(server.port, "/", auth()))
    assert status == 502 and error["code"] == "upstream_tls_failed", error
    assert "certificate" in error["message"] and "mismatch" in error["message"], error["message"]
    assert backend.requests == []
    # …and accepted for the name it does carry.
    server.write_versions([("v1", 100, [f"https://127.0.0.1:{port}"], {"tls": {"ca_file": "ca.pem", "server_name": "backend.test"}})])
    wait_until(lambda: http_get(server.port, "/", auth())[0] == 200, timeout=10, what=lambda: "the reload with server_name was not applied")
    assert backend.requests


def test_untrusted_certificate_gets_502_and_insecure_skip_verify_is_explicit(started, proxy, tmp_path):
    backend, _ = https_backend(started, tmp_path)
    port = backend.address.split(":")[1]
    # Verified against the system's CAs, which do not know the test CA.
    server = proxy([("v1", 100, [f"https://127.0.0.1:{port}"])])
    status, error = error_of(http_get(server.port, "/", auth()))
    assert status == 502 and error["code"] == "upstream_tls_failed"
    assert "certificate was refused" in error["message"], error["message"]
    assert f"127.0.0.1:{port}" in error["message"]
    server.stop()
    insecure = proxy([("v1", 100, [f"https://127.0.0.1:{port}"], {"tls": {"insecure_skip_verify": True}})])
    assert http_get(insecure.port, "/", auth())[0] == 200
    insecure.wait_for_log("insecure_skip_verify is set")


def test_plain_backend_named_https_gets_a_clear_502(recorder, proxy):
    backend = recorder("v1")
    server = proxy([("v1", 100, [f"https://{backend.address}"])])
    status, error = error_of(http_get(server.port, "/", auth()))
    assert status == 502 and error["code"] == "upstream_tls_failed", error
    assert "TLS handshake" in error["message"]


def test_health_checks_reach_https_backends(started, proxy, tmp_path):
    backend, _ = https_backend(started, tmp_path)
    port = backend.address.split(":")[1]
    check = {"interval_ms": 200, "timeout_ms": 150, "healthy_threshold": 1, "unhealthy_threshold": 1}
    server = proxy([("v1", 100, [f"https://127.0.0.1:{port}"], {"tls": {"ca_file": "ca.pem"}, "health_check": check})])
    wait_until(lambda: server.status()["versions"][0]["state"] == "RUNNING", timeout=10, what=lambda: server.status())
    assert backend.probes > 0


def test_versions_file_errors_for_upstream_tls(recorder, proxy, tmp_path):
    backend = recorder("v1")
    server = proxy([("v1", 100, [backend.address])])
    cases = [
        ([f"https://{backend.address}", "127.0.0.1:9"], {}, "mixes https:// endpoints with plain ones"),
        ([f"https://{backend.address}"], {"tls": False}, "has \"tls\": false but https:// endpoints"),
        ([f"http://{backend.address}"], {"tls": True}, "has \"tls\" settings but http:// endpoints"),
        ([backend.address], {"tls": {"ca_file": "missing.pem"}}, "missing.pem"),
        ([backend.address], {"tls": {"insecure_skip_verify": True, "ca_file": "x.pem"}}, "ca_file has no effect"),
        ([backend.address], {"tls": {"sever_name": "a"}}, "did you mean \"server_name\""),
    ]
    for endpoints, fields, expected in cases:
        server.write_versions([("v1", 100, endpoints, fields)])
        wait_until(lambda: any(expected in error for error in server.status()["last_reload"]["errors"]), timeout=10, what=lambda: (expected, server.status()["last_reload"]))
        assert http_get(server.port, "/", auth())[0] == 200, "the last good versions stay in use"


def test_upstream_token_replaces_the_clients_and_is_hot_reloaded(recorder, proxy, tmp_path):
    v1, v2 = recorder("v1"), recorder("v2")
    token_file = tmp_path / "v1-service-token"
    token_file.write_text("service-token-one\n")
    server = proxy([("v1", 100, [v1.address], {"upstream_bearer_token_file": "v1-service-token"}),
                    ("v2", 0, [v2.address])])
    assert http_get(server.port, "/", auth())[0] == 200
    assert v1.requests[-1]["headers"]["authorization"] == "Bearer service-token-one"
    assert TOKEN not in json.dumps(v1.requests[-1]["headers"]), "the client's token never reaches a version with its own"
    # A version without one gets no Authorization at all (the default: the client's is not forwarded).
    assert http_get(server.port, "/", auth({"X-ANYSCALE-VERSION": "v2"}))[0] == 200
    assert "authorization" not in v2.requests[-1]["headers"]
    # Rotated by rename: the next request carries the new token.
    replacement = tmp_path / "token.tmp"
    replacement.write_text("service-token-two")
    os.rename(replacement, token_file)
    deadline = time.time() + 10
    while True:
        assert http_get(server.port, "/", auth())[0] == 200
        if v1.requests[-1]["headers"]["authorization"] == "Bearer service-token-two":
            break
        assert time.time() < deadline, "the new token was not picked up"
        time.sleep(0.1)
    # An invalid file (two words) keeps the last good token, with the reason in /status.
    token_file.write_text("not a token\n")
    wait_until(lambda: any("upstream_bearer_token_file" in error for error in server.status()["last_reload"]["errors"]), timeout=10, what=lambda: server.status()["last_reload"])
    assert http_get(server.port, "/", auth())[0] == 200
    assert v1.requests[-1]["headers"]["authorization"] == "Bearer service-token-two"
