"""gRPC calls through the proxy to real gRPC servers (grpcio on both sides): every kind of
call, trailers and metadata as the server sent them, routing by weight and by metadata,
deadlines and cancellation reaching the server."""
import json
import socket
import threading
import time

import grpc
import pytest

from grpc_backend import GrpcBackend, channel, method
from harness import TOKEN, http_get, wait_until

AUTH = ("authorization", f"Bearer {TOKEN}")


@pytest.fixture
def backends():
    started = []

    def start(name, healthz="ok"):
        backend = GrpcBackend(name, healthz)
        started.append(backend)
        return backend

    yield start
    for backend in started:
        backend.stop()


def unused_address():
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{unused.getsockname()[1]}"


def connections_to(port):
    """Established TCP connections to 127.0.0.1:`port`, from /proc/net/tcp."""
    count = 0
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            remote, state = fields[2], fields[3]
            if state == "01" and int(remote.split(":")[1], 16) == port:
                count += 1
    return count


def grpc_version(name, percent, recorder, backend):
    return (name, percent, [recorder().address], {"grpc_endpoints": [backend.address]})


def test_unary_call_with_metadata_and_trailers(recorder, proxy, backends):
    backend = backends("v1")
    server = proxy([grpc_version("v1", 100, recorder, backend)])
    with channel(server.port) as ch:
        reply, call = method(ch, "Unary").with_call(b"\x08\x96\x01", metadata=[AUTH], timeout=10)
    assert reply == b"\x08\x96\x01"
    initial = dict(call.initial_metadata())
    assert initial["served-by"] == "v1" and initial["x-anyscale-version"] == "v1"
    assert dict(call.trailing_metadata()) == {"served-by": "v1", "x-trailer": "kept"}
    assert call.code() == grpc.StatusCode.OK
    assert server.settled_status()["exchanges"]["completed"] == 1


def test_grpc_status_in_the_access_log_and_metrics(recorder, proxy, backends, tmp_path):
    backend = backends("v1")
    server = proxy([grpc_version("v1", 100, recorder, backend)], extra={"access_log": {"path": "access.log"}})
    with channel(server.port) as ch:
        method(ch, "Unary")(b"", metadata=[AUTH], timeout=10)
        for name, metadata in (("Fail", [AUTH]), ("Unary", [])):
            with pytest.raises(grpc.RpcError):
                method(ch, name)(b"", metadata=metadata, timeout=10)
    deadline = time.monotonic() + 5
    lines = []
    while len(lines) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
        lines = [json.loads(line) for line in (tmp_path / "access.log").read_text().splitlines()]
    assert [(line["path"], line["status"], line["grpc_status"]) for line in lines] == [
        ("/test.Echo/Unary", 200, 0), ("/test.Echo/Fail", 200, 5), ("/test.Echo/Unary", 200, 16)], lines
    assert lines[0]["protocol"] == "HTTP/2" and lines[0]["endpoint"] == backend.address and lines[0]["version"] == "v1"
    metrics = http_get(server.admin_port, "/metrics")[2].decode()
    assert 'switchyard_grpc_calls_total{version="v1",grpc_status="0"} 1' in metrics
    assert 'switchyard_grpc_calls_total{version="v1",grpc_status="5"} 1' in metrics
    assert 'switchyard_grpc_calls_total{version="",grpc_status="16"} 1' in metrics


def test_ray_serve_metadata_passes_through(recorder, proxy, backends):
    backend = backends("v1")
    server = proxy([grpc_version("v1", 100, recorder, backend)])
    metadata = [AUTH, ("application", "app1"), ("request_id", "r-42"), ("multiplexed_model_id", "m7")]
    with channel(server.port) as ch:
        seen = json.loads(method(ch, "Metadata")(b"", metadata=metadata, timeout=10))
    assert seen["application"] == "app1" and seen["request_id"] == "r-42" and seen["multiplexed_model_id"] == "m7"
    assert "authorization" not in seen, "the client's token stays at the proxy (auth.forward_authorization)"
    assert seen["x-forwarded-for"] == "127.0.0.1" and seen["x-forwarded-proto"] == "http"


def test_forwarding_fields_match_the_http_paths(recorder, proxy, backends):
    """Earlier X-Forwarded-For hops are kept before this client, and X-Forwarded-Host and -Proto
    are the proxy's, as for HTTP/1.1 and HTTP/2 clients of HTTP backends. (The gRPC client
    library sends one value per key, so repeated fields are covered by HeaderRewriteTests.)"""
    backend = backends("v1")
    server = proxy([grpc_version("v1", 100, recorder, backend)])
    metadata = [AUTH, ("x-forwarded-for", "10.0.0.1, 10.0.0.2"),
                ("x-forwarded-host", "spoofed.example"), ("x-forwarded-proto", "https")]
    with channel(server.port) as ch:
        pairs = json.loads(method(ch, "MetadataPairs")(b"", metadata=metadata, timeout=10))
    forwarding = [(key, value) for key, value in pairs if key.startswith("x-forwarded-")]
    assert sorted(forwarding) == [
        ("x-forwarded-for", "10.0.0.1, 10.0.0.2, 127.0.0.1"),
        ("x-forwarded-host", f"127.0.0.1:{server.port}"),
        ("x-forwarded-proto", "http")], pairs


def test_upstream_token_replaces_the_clients(recorder, proxy, backends, tmp_path):
    backend = backends("v1")
    (tmp_path / "upstream.token").write_text("ray-secret\n")
    server = proxy([("v1", 100, [recorder().address],
                     {"grpc_endpoints": [backend.address], "upstream_bearer_token_file": "upstream.token"})])
    with channel(server.port) as ch:
        seen = json.loads(method(ch, "Metadata")(b"", metadata=[AUTH], timeout=10))
    assert seen["authorization"] == "Bearer ray-secret"


def test_backend_status_and_message_are_relayed(recorder, proxy, backends):
    backend = backends("v1")
    server = proxy([grpc_version("v1", 100, recorder, backend)])
    with channel(server.port) as ch, pytest.raises(grpc.RpcError) as raised:
        method(ch, "Fail")(b"", metadata=[AUTH], timeout=10)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert raised.value.details() == "no such model: ünïcode 100%"
    assert ("served-by", "v1") in raised.value.trailing_metadata()


def test_server_streaming_flows_message_by_message(recorder, proxy, backends):
    backend = backends("v1")
    server = proxy([grpc_version("v1", 100, recorder, backend)])
    with channel(server.port) as ch:
        started = time.monotonic()
        arrivals = []
        for message in method(ch, "Count", "unary_stream")(b"5 0.3", metadata=[AUTH], timeout=20):
            arrivals.append((message, time.monotonic() - started))
    assert [m for m, _ in arrivals] == [f"message {i}".encode() for i in range(5)]
    # The first message is not held back until the stream ends (1.5 s).
    assert arrivals[0][1] < 0.8, arrivals


def test_client_streaming_and_bidi(recorder, proxy, backends):
    backend = backends("v1")
    server = proxy([grpc_version("v1", 100, recorder, backend)])
    with channel(server.port) as ch:
        total = method(ch, "Sum", "stream_unary")(iter([b"x" * n for n in range(1, 51)]), metadata=[AUTH], timeout=20)
        assert total == str(sum(range(1, 51))).encode()
        # Ping-pong: each message is sent only after the echo of the previous one came back,
        # so this passes only if both directions flow frame by frame.
        outbox = []
        ready = threading.Event()
        ready.set()

        def messages():
            for index in range(20):
                assert ready.wait(10), "no echo came back"
                ready.clear()
                outbox.append(index)
                yield f"ping {index}".encode()

        echoes = []
        for echo in method(ch, "Chat", "stream_stream")(messages(), metadata=[AUTH], timeout=20):
            echoes.append(echo)
            ready.set()
    assert echoes == [f"echo ping {i}".encode() for i in range(20)]


def test_four_mib_messages_both_ways(recorder, proxy, backends):
    backend = backends("v1")
    server = proxy([grpc_version("v1", 100, recorder, backend)])
    payload = bytes(range(256)) * (4 * 1024 * 1024 // 256)
    with channel(server.port) as ch:
        for _ in range(3):
            assert method(ch, "Unary")(payload, metadata=[AUTH], timeout=30) == payload


def test_pinning_by_metadata_and_weighted_split(recorder, proxy, backends):
    blue, green = backends("blue"), backends("green")
    server = proxy([grpc_version("blue", 70, recorder, blue), grpc_version("green", 30, recorder, green)])
    with channel(server.port) as ch:
        unary = method(ch, "Unary")
        for _ in range(10):
            _, call = unary.with_call(b"", metadata=[AUTH, ("x-anyscale-version", "green")], timeout=10)
            assert dict(call.initial_metadata())["served-by"] == "green"
            assert dict(call.initial_metadata())["x-anyscale-version"] == "green"
        served = {"blue": 0, "green": 0}
        for _ in range(400):
            _, call = unary.with_call(b"", metadata=[AUTH], timeout=10)
            served[dict(call.initial_metadata())["served-by"]] += 1
    # 70/30 of 400 calls: blue is 280 ± a wide margin (4.5 standard deviations).
    assert 240 < served["blue"] < 320, served


def test_many_concurrent_calls_share_few_connections(recorder, proxy, backends):
    backend = backends("v1")
    server = proxy([grpc_version("v1", 100, recorder, backend)], workers=1)
    with channel(server.port) as ch:
        unary = method(ch, "Unary")
        futures = [unary.future(f"call {i}".encode(), metadata=[AUTH], timeout=20) for i in range(300)]
        assert [f.result() for f in futures] == [f"call {i}".encode() for i in range(300)]
        # One worker: at most 4 connections to the endpoint, however many calls were in flight.
        assert 1 <= connections_to(backend.port) <= 4


def test_client_deadline_and_cancel_reach_the_server(recorder, proxy, backends):
    backend = backends("v1")
    server = proxy([grpc_version("v1", 100, recorder, backend)])
    with channel(server.port) as ch:
        with pytest.raises(grpc.RpcError) as raised:
            method(ch, "Slow")(b"", metadata=[AUTH], timeout=0.5)
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        stream = method(ch, "Count", "unary_stream")(b"1000 0.05", metadata=[AUTH], timeout=20)
        assert next(stream) == b"message 0"
        stream.cancel()
    deadline = time.monotonic() + 5
    while len(backend.cancelled) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(backend.cancelled) == ["Count", "Slow"], backend.cancelled


def test_a_version_without_grpc_endpoints_says_so(recorder, proxy, backends):
    backend = backends("v1")
    server = proxy([grpc_version("v1", 100, recorder, backend), ("http-only", 0, [recorder().address])])
    with channel(server.port) as ch, pytest.raises(grpc.RpcError) as raised:
        method(ch, "Unary")(b"", metadata=[AUTH, ("x-anyscale-version", "http-only")], timeout=10)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "no grpc_endpoints" in raised.value.details()


def test_a_dead_grpc_endpoint_is_skipped(recorder, proxy, backends):
    backend = backends("v1")
    server = proxy([("v1", 100, [recorder().address], {"grpc_endpoints": [unused_address(), backend.address]})])
    with channel(server.port) as ch:
        for _ in range(10):
            assert method(ch, "Unary")(b"ok", metadata=[AUTH], timeout=10) == b"ok"


def test_backend_going_away_mid_call(recorder, proxy, backends):
    backend = backends("v1")
    server = proxy([grpc_version("v1", 100, recorder, backend)])
    with channel(server.port) as ch:
        stream = method(ch, "Count", "unary_stream")(b"1000 0.05", metadata=[AUTH], timeout=20)
        assert next(stream) == b"message 0"
        backend.server.stop(0)
        with pytest.raises(grpc.RpcError) as raised:
            for _ in stream:
                pass
        assert raised.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        # The proxy serves on: the next call finds no endpoint and says so.
        with pytest.raises(grpc.RpcError) as raised:
            method(ch, "Unary")(b"", metadata=[AUTH], timeout=10)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


FAST_CHECKS = {"health_check": {"interval_ms": 200, "timeout_ms": 200, "healthy_threshold": 2, "unhealthy_threshold": 2}}


def grpc_states(server):
    """{address: state} of every gRPC endpoint in /status."""
    return {entry["address"]: entry for version in server.status()["versions"] for entry in version["grpc_addresses"]}


def test_grpc_endpoints_are_checked_with_ray_serves_healthz(recorder, proxy, backends):
    """Healthz is judged by its grpc-status: UNAVAILABLE (Ray's HAProxy mode answers HTTP 200
    with it) and UNIMPLEMENTED make an endpoint UNHEALTHY, Ray's draining answer DRAINING; calls
    then go to the healthy endpoint only."""
    good, unavailable, unimplemented, draining = (backends("good"), backends("unavailable", "unavailable"),
                                                  backends("unimplemented", None), backends("draining", "draining"))
    every = [good, unavailable, unimplemented, draining]
    server = proxy([("v1", 100, [recorder().address], {"grpc_endpoints": [b.address for b in every]})], extra=FAST_CHECKS)
    expected = {good.address: "HEALTHY", unavailable.address: "UNHEALTHY", unimplemented.address: "UNHEALTHY",
                draining.address: "DRAINING"}
    deadline = time.monotonic() + 10
    while {address: entry["state"] for address, entry in grpc_states(server).items()} != expected:
        assert time.monotonic() < deadline, grpc_states(server)
        time.sleep(0.1)
    states = grpc_states(server)
    assert "grpc-status 14 (no healthy replica)" in states[unavailable.address]["last_failure"]
    assert "grpc-status 12" in states[unimplemented.address]["last_failure"]
    assert server.status()["versions"][0]["state"] == "RUNNING", "the HTTP endpoint decides the version's state"
    with channel(server.port) as ch:
        served = {dict(method(ch, "Unary").with_call(b"", metadata=[AUTH], timeout=10)[1].initial_metadata())["served-by"]
                  for _ in range(40)}
    assert served == {"good"}
    # It recovers: the unavailable endpoint answers again and takes calls again.
    unavailable.healthz = "ok"
    wait_until(lambda: grpc_states(server)[unavailable.address]["state"] == "HEALTHY", timeout=10, what=lambda: grpc_states(server))
    with channel(server.port) as ch:
        served = {dict(method(ch, "Unary").with_call(b"", metadata=[AUTH], timeout=10)[1].initial_metadata())["served-by"]
                  for _ in range(40)}
    assert served == {"good", "unavailable"}


def test_grpc_over_tls_by_alpn(recorder, proxy, backends, tmp_path):
    """A gRPC client speaking TLS (h2 by ALPN) to the proxy; the gRPC endpoint is h2c behind."""
    from test_tls import tls_listener, tls_port
    backend = backends("v1")
    listeners, a_cert, _ = tls_listener(str(tmp_path))
    server = proxy([grpc_version("v1", 100, recorder, backend)], extra=listeners)
    with open(a_cert, "rb") as f:
        credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
    options = [("grpc.ssl_target_name_override", "a.test")]
    with grpc.secure_channel(f"127.0.0.1:{tls_port(server)}", credentials, options=options) as ch:
        seen = json.loads(method(ch, "Metadata")(b"", metadata=[AUTH], timeout=10))
        echoes = list(method(ch, "Chat", "stream_stream")(iter([b"a", b"b"]), metadata=[AUTH], timeout=10))
    assert seen["x-forwarded-proto"] == "https"
    assert echoes == [b"echo a", b"echo b"]
