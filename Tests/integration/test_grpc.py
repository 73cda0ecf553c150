"""gRPC calls from a real gRPC client (grpcio) through the proxy's HTTP/2 listener: the
proxy's own errors as gRPC statuses, and `grpc-timeout` as the call's deadline."""
import socket
import time

import grpc
import pytest

from h2client import H2Client
from harness import TOKEN, SynDroppingListener, ThreadedSocketServer

AUTH = ("authorization", f"Bearer {TOKEN}")


def call(port, metadata, timeout=10):
    """One unary call with raw bytes (no generated stubs); returns the RpcError it raised."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        method = channel.unary_unary("/ray.serve.UserDefinedService/Predict")
        with pytest.raises(grpc.RpcError) as raised:
            method(b"\x08\x01", metadata=metadata, timeout=timeout)
        return raised.value


def timed_call(port, grpc_timeout):
    """One call from a raw HTTP/2 client that sets `grpc-timeout` and never gives up itself
    (grpcio would cancel the call at the same deadline, which would hide the proxy's): its
    answer and how long it took."""
    client = H2Client(port)
    started = time.monotonic()
    stream = client.request("/svc/M", {"authorization": f"Bearer {TOKEN}", "content-type": "application/grpc",
                                       "te": "trailers", "grpc-timeout": grpc_timeout},
                            method="POST", body=b"\0\0\0\0\0")
    [response] = client.wait(stream, timeout=10)
    return response, time.monotonic() - started, started


def test_proxy_errors_are_grpc_statuses(recorder, proxy):
    backend = recorder()
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{unused.getsockname()[1]}"
    server = proxy([("v1", 100, [backend.address], {"grpc_endpoints": [closed]}),
                    ("down", 0, [closed], {"grpc_endpoints": [closed]})])
    cases = [
        ([], grpc.StatusCode.UNAUTHENTICATED, "missing Authorization"),
        ([("authorization", "Bearer wrong")], grpc.StatusCode.UNAUTHENTICATED, "not valid"),
        ([AUTH, ("x-anyscale-version", "v9")], grpc.StatusCode.NOT_FOUND, "versions taking traffic: v1"),
        ([AUTH, ("x-anyscale-version", "v1"), ("x-anyscale-version", "down")], grpc.StatusCode.INVALID_ARGUMENT,
         "given twice"),
        ([AUTH, ("x-anyscale-version", "down")], grpc.StatusCode.UNAVAILABLE, "could not connect"),
    ]
    for metadata, code, text in cases:
        error = call(server.port, metadata)
        assert error.code() == code, (metadata, error.code(), error.details())
        assert text in error.details(), error.details()
    # The version is named in the answer's metadata once one was chosen.
    error = call(server.port, [AUTH, ("x-anyscale-version", "down")])
    assert ("x-anyscale-version", "down") in (error.initial_metadata() or ()) + (error.trailing_metadata() or ())
    assert backend.requests == [], "no error reached a backend"


def test_grpc_timeout_is_the_calls_deadline_at_the_proxy(proxy, recorder):
    """A gRPC backend that never answers: the proxy gives up at the call's grpc-timeout (not at
    timeouts.response_ms), answers DEADLINE_EXCEEDED and cancels the backend's stream
    (RST_STREAM CANCEL). The call is made by a raw HTTP/2 client that sets grpc-timeout and
    never gives up itself (grpcio would cancel the call at the same deadline, which would hide
    the proxy's); the backend reads frames and never answers."""
    resets = []

    class SilentBackend(ThreadedSocketServer):
        def serve(self, conn):
            conn.settimeout(30)
            received = b""
            while chunk := conn.recv(65536):
                received += chunk
                frames, offset = received[24:], 0  # after the client preface
                while len(frames) >= offset + 9:
                    length = int.from_bytes(frames[offset:offset + 3], "big")
                    kind, stream = frames[offset + 3], int.from_bytes(frames[offset + 5:offset + 9], "big") & 0x7FFFFFFF
                    if kind == 3 and len(frames) >= offset + 13:
                        code = int.from_bytes(frames[offset + 9:offset + 13], "big")
                        resets.append((stream, code, time.monotonic()))
                    offset += 9 + length
                received = received[:24] + frames[offset:]

    backend = SilentBackend()
    try:
        server = proxy([("v1", 100, [recorder().address], {"grpc_endpoints": [backend.address]})],
                       extra={"timeouts": {"response_ms": 60000}})
        response, elapsed, started = timed_call(server.port, "700m")
        assert 0.6 < elapsed < 3, elapsed
        assert response.headers.get("grpc-status") == "4", response.headers
        assert "grpc-timeout" in response.headers.get("grpc-message", "")
        deadline = time.monotonic() + 5
        while not resets and time.monotonic() < deadline:
            time.sleep(0.05)
        assert resets and resets[0][:2] == (1, 8) and resets[0][2] - started < 3, "the backend's stream was cancelled"
    finally:
        backend.stop()


def test_an_answered_call_left_open_does_not_keep_the_connection(recorder, proxy):
    """A gRPC client is not sent RST_STREAM after an early answer (grpc-core would report the
    call failed). A stream left open on an answered call then must not hold the connection:
    it still closes after timeouts.idle_ms."""
    from hpack import Encoder
    from hyperframe.frame import GoAwayFrame, HeadersFrame, RstStreamFrame, SettingsFrame
    from h2client import RawH2

    backend = recorder()
    server = proxy([("v1", 100, [backend.address])], extra={"timeouts": {"idle_ms": 500}})
    connection = RawH2(server.port)
    connection.send(SettingsFrame(0))
    call = HeadersFrame(1, Encoder().encode([(":method", "POST"), (":scheme", "http"), (":path", "/svc/M"),
                                             (":authority", "a"), ("content-type", "application/grpc")]))
    call.flags = {"END_HEADERS"}  # the request body never comes
    connection.send(call)
    started = time.monotonic()
    frames = connection.frames(timeout=5, until=lambda f: isinstance(f, GoAwayFrame))
    answer = [f for f in frames if isinstance(f, HeadersFrame) and f.stream_id == 1]
    assert answer and "END_STREAM" in answer[0].flags, "a Trailers-Only answer"
    assert not any(isinstance(f, RstStreamFrame) for f in frames)
    assert isinstance(frames[-1], GoAwayFrame) and time.monotonic() - started < 3, "closed as idle"
    connection.close()


def test_a_deadline_passing_while_connecting_is_deadline_exceeded(proxy, recorder):
    """A gRPC endpoint whose accept queue is full: the proxy's connect hangs (SYNs dropped).
    The call's grpc-timeout (300 ms) ends it as DEADLINE_EXCEEDED, well before
    timeouts.connect_ms (5 s) would move it on and end it UNAVAILABLE."""
    with SynDroppingListener() as full:
        server = proxy([("v1", 100, [recorder().address], {"grpc_endpoints": [full.address]})],
                       extra={"timeouts": {"connect_ms": 5000}})
        response, elapsed, _ = timed_call(server.port, "300m")
        assert response.headers.get("grpc-status") == "4", response.headers
        assert 0.25 < elapsed < 2, elapsed


def test_a_deadline_passing_after_the_response_began_is_deadline_exceeded(proxy, recorder):
    """The backend answers the head and one message, then nothing: at the call's grpc-timeout
    the client gets what came, then trailers with DEADLINE_EXCEEDED (not a reset, which a
    gRPC client reports as INTERNAL)."""
    import h2.config
    import h2.connection
    import h2.events

    class StallingBackend(ThreadedSocketServer):
        def serve(self, conn):
            session = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
            session.initiate_connection()
            conn.sendall(session.data_to_send())
            conn.settimeout(30)
            while chunk := conn.recv(65536):
                for event in session.receive_data(chunk):
                    if isinstance(event, h2.events.RequestReceived):
                        session.send_headers(event.stream_id, [(":status", "200"), ("content-type", "application/grpc")])
                        session.send_data(event.stream_id, b"\0\0\0\0\2hi")
                conn.sendall(session.data_to_send())

    backend = StallingBackend()
    try:
        server = proxy([("v1", 100, [recorder().address], {"grpc_endpoints": [backend.address]})],
                       extra={"timeouts": {"response_ms": 60000}})
        response, elapsed, _ = timed_call(server.port, "700m")
        assert 0.6 < elapsed < 3, elapsed
        assert response.reset is None, f"reset with {response.reset}"
        assert response.headers.get(":status") == "200" and bytes(response.data) == b"\0\0\0\0\2hi"
        assert response.trailers.get("grpc-status") == "4", response.trailers
        assert "deadline" in response.trailers.get("grpc-message", "")
    finally:
        backend.stop()
