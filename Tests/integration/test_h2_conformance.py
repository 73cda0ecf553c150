"""RFC 9113 conformance of the HTTP/2 listener: the cases h2spec checks for a server, written
as raw frames (hyperframe, hpack) against the real binary. Each case says what the client
sends after the preface and its SETTINGS, and the error it must get: a connection error
(GOAWAY with the code, then the connection closes) or, where the RFC allows, a stream error
(RST_STREAM with the code)."""
import socket
import time

import pytest
from hpack import Encoder
from hyperframe.frame import (DataFrame, GoAwayFrame, HeadersFrame, PingFrame, PriorityFrame,
                              RstStreamFrame, SettingsFrame, WindowUpdateFrame)

from h2client import RawH2
from harness import MEASURES_MEMORY, TOKEN, Proxy, RecordingBackend, rss_kib

NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, STREAM_CLOSED, FRAME_SIZE_ERROR = 0x0, 0x1, 0x3, 0x5, 0x6
REFUSED_STREAM, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 0x7, 0x9, 0xb


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    backend = RecordingBackend()
    proxy = Proxy(str(tmp_path_factory.mktemp("h2")), [("v1", 100, [backend.address])])
    yield proxy
    proxy.stop()
    backend.stop()


def block(*fields, auth=True, encoder=None):
    """An HPACK block of a GET request with these fields after the usual ones."""
    base = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "example.test")]
    if auth:
        base.append(("authorization", f"Bearer {TOKEN}"))
    return (encoder or Encoder()).encode(base + list(fields))


def headers(stream, data, end_stream=True, end_headers=True):
    frame = HeadersFrame(stream, data)
    frame.flags = set((["END_STREAM"] if end_stream else []) + (["END_HEADERS"] if end_headers else []))
    return frame


def raw(frame_type, stream, payload, flags=0):
    """A frame with any header at all, for lengths and flags hyperframe would not write."""
    return len(payload).to_bytes(3, "big") + bytes([frame_type, flags]) + (stream & 0x7FFFFFFF).to_bytes(4, "big") + payload


def settings(*pairs):
    return raw(0x4, 0, b"".join(key.to_bytes(2, "big") + value.to_bytes(4, "big") for key, value in pairs))


def connect(server):
    connection = RawH2(server.port)
    connection.send(SettingsFrame(0))
    return connection


def outcome(connection, timeout=3.0, errors_only=False):
    """What the server answered first: ('goaway', code), ('rst', code), ('headers', stream) or
    ('nothing', None). `errors_only`: past responses, to the first error."""
    frames = connection.frames(timeout=timeout, until=lambda f: isinstance(f, (GoAwayFrame, RstStreamFrame)) or
                               (not errors_only and isinstance(f, HeadersFrame) and f.stream_id > 0))
    for frame in frames:
        if isinstance(frame, GoAwayFrame):
            return "goaway", frame.error_code
        if isinstance(frame, RstStreamFrame):
            return "rst", frame.error_code
        if not errors_only and isinstance(frame, HeadersFrame) and frame.stream_id > 0:
            return "headers", frame.stream_id
    return "nothing", None


def closed_after(connection):
    """True when the server closes the connection (after a connection error)."""
    connection.frames(timeout=2.0)
    try:
        connection.sock.settimeout(2.0)
        return connection.sock.recv(1) == b""
    except (ConnectionResetError, socket.timeout):
        return True


CONNECTION_ERRORS = {
    # §6.x: frames that belong to a stream, on stream 0, and the other way round.
    "DATA on stream 0": ([raw(0x0, 0, b"x")], PROTOCOL_ERROR, True),
    "HEADERS on stream 0": ([raw(0x1, 0, block(), flags=0x5)], PROTOCOL_ERROR, True),
    "PRIORITY on stream 0": ([raw(0x2, 0, b"\x00\x00\x00\x01\x10")], PROTOCOL_ERROR, True),
    "RST_STREAM on stream 0": ([raw(0x3, 0, b"\x00\x00\x00\x08")], PROTOCOL_ERROR, True),
    "SETTINGS on stream 1": ([raw(0x4, 1, b"")], PROTOCOL_ERROR, True),
    "PING on stream 1": ([raw(0x6, 1, b"12345678")], PROTOCOL_ERROR, True),
    "GOAWAY on stream 1": ([raw(0x7, 1, b"\x00\x00\x00\x00\x00\x00\x00\x00")], PROTOCOL_ERROR, True),
    "CONTINUATION without HEADERS": ([raw(0x9, 1, b"", flags=0x4)], PROTOCOL_ERROR, True),
    "HEADERS on an even (server) stream id": ([headers(2, block())], PROTOCOL_ERROR, True),
    # §4.2, §6: frame sizes.
    "SETTINGS length not a multiple of 6": ([raw(0x4, 0, b"\x00\x03\x00\x00\x00")], FRAME_SIZE_ERROR, True),
    "SETTINGS ACK with a payload": ([raw(0x4, 0, b"\x00\x03\x00\x00\x00\x01", flags=0x1)], FRAME_SIZE_ERROR, True),
    "PING of 7 bytes": ([raw(0x6, 0, b"1234567")], FRAME_SIZE_ERROR, True),
    "WINDOW_UPDATE of 3 bytes": ([raw(0x8, 0, b"\x00\x00\x01")], FRAME_SIZE_ERROR, True),
    "RST_STREAM of 3 bytes": ([headers(1, block(), end_stream=False), raw(0x3, 1, b"\x00\x00\x08")], FRAME_SIZE_ERROR, True),
    "GOAWAY of 4 bytes": ([raw(0x7, 0, b"\x00\x00\x00\x00")], FRAME_SIZE_ERROR, True),
    "DATA over SETTINGS_MAX_FRAME_SIZE": ([headers(1, block(), end_stream=False), raw(0x0, 1, b"x" * 16385)],
                                          FRAME_SIZE_ERROR, True),
    # §6.5.2: setting values out of range.
    "SETTINGS_ENABLE_PUSH of 2": ([settings((0x2, 2))], PROTOCOL_ERROR, True),
    "SETTINGS_INITIAL_WINDOW_SIZE of 2^31": ([settings((0x4, 1 << 31))], FLOW_CONTROL_ERROR, True),
    "SETTINGS_MAX_FRAME_SIZE below 16384": ([settings((0x5, 16383))], PROTOCOL_ERROR, True),
    "SETTINGS_MAX_FRAME_SIZE of 2^24": ([settings((0x5, 1 << 24))], PROTOCOL_ERROR, True),
    # §6.9: flow control.
    "WINDOW_UPDATE of 0 on the connection": ([raw(0x8, 0, b"\x00\x00\x00\x00")], PROTOCOL_ERROR, True),
    "connection window over 2^31-1": ([WindowUpdateFrame(0, 0x7FFFFFFF)], FLOW_CONTROL_ERROR, True),
    "DATA beyond the connection window": ([headers(1, block(), end_stream=False)] +
                                          [DataFrame(1, b"x" * 16384) for _ in range(5)], FLOW_CONTROL_ERROR, True),
    # §4.3, §6.10: header blocks.
    "HEADERS interleaved with DATA before CONTINUATION": ([headers(1, block(), end_headers=False), DataFrame(1, b"x")],
                                                          PROTOCOL_ERROR, True),
    "CONTINUATION of another stream": ([headers(1, block()[:5], end_headers=False), raw(0x9, 3, block()[5:], flags=0x4)],
                                       PROTOCOL_ERROR, True),
    "CONTINUATION after END_HEADERS": ([headers(1, block(), end_stream=False), raw(0x9, 1, b"", flags=0x4)], PROTOCOL_ERROR, True),
    "HPACK index 0": ([headers(1, b"\x80")], COMPRESSION_ERROR, True),
    "HPACK index past the table": ([headers(1, b"\xff\x7f")], COMPRESSION_ERROR, True),
    "HPACK table size update over the setting": ([headers(1, b"\x3f\xe1\x3f" + block())], COMPRESSION_ERROR, True),
    # §5.1: stream states.
    "DATA on an idle stream": ([DataFrame(1, b"x")], PROTOCOL_ERROR, True),
    "RST_STREAM on an idle stream": ([RstStreamFrame(1, 8)], PROTOCOL_ERROR, True),
    "WINDOW_UPDATE on an idle stream": ([WindowUpdateFrame(1, 1)], PROTOCOL_ERROR, True),
    "DATA on a half-closed (remote) stream": ([headers(1, block()), DataFrame(1, b"x")], STREAM_CLOSED, False),
    "HEADERS on a half-closed (remote) stream": ([headers(1, block()), headers(1, block())], STREAM_CLOSED, False),
}


@pytest.mark.parametrize("name", list(CONNECTION_ERRORS))
def test_connection_errors(server, name):
    frames, code, must_close = CONNECTION_ERRORS[name]
    connection = connect(server)
    connection.send(*frames)
    kind, value = outcome(connection, errors_only=True)
    # A stream error is allowed by the RFC for the half-closed cases only.
    allowed = {("goaway", code)} if must_close else {("goaway", code), ("rst", code)}
    assert (kind, value) in allowed, f"{name}: got {kind} {value}, wanted {allowed}"
    if kind == "goaway":
        assert closed_after(connection), f"{name}: the connection must close after GOAWAY"
    connection.close()


STREAM_ERRORS = {
    # §8.2: field names are lowercase; no connection-specific fields; TE only "trailers".
    "an uppercase field name": [("X-Upper", "1")],
    "a Connection field": [("connection", "keep-alive")],
    "a Transfer-Encoding field": [("transfer-encoding", "chunked")],
    "TE other than trailers": [("te", "gzip")],
    "a field name with a space": [("bad name", "1")],
    "a field value with a newline": [("x-value", "a\nb")],
    # §8.3: pseudo-header fields.
    "a pseudo-header after a regular field": [("x-first", "1"), (":foo", "bar")],
    "an unknown pseudo-header": [(":foo", "bar")],
    "a response pseudo-header in a request": [(":status", "200")],
    "a second :path": [(":path", "/again")],
}


@pytest.mark.parametrize("name", list(STREAM_ERRORS))
def test_malformed_requests_reset_their_stream(server, name):
    connection = connect(server)
    connection.send(headers(1, block(*STREAM_ERRORS[name])))
    kind, value = outcome(connection)
    assert (kind, value) in {("rst", PROTOCOL_ERROR), ("goaway", PROTOCOL_ERROR)}, f"{name}: got {kind} {value}"
    connection.close()


MISSING_PSEUDO = {
    "no :method": [(":scheme", "http"), (":path", "/"), (":authority", "a")],
    "no :path": [(":method", "GET"), (":scheme", "http"), (":authority", "a")],
    "no :scheme": [(":method", "GET"), (":path", "/"), (":authority", "a")],
    "an empty :path": [(":method", "GET"), (":scheme", "http"), (":path", ""), (":authority", "a")],
}


@pytest.mark.parametrize("name", list(MISSING_PSEUDO))
def test_requests_without_their_pseudo_headers_reset_their_stream(server, name):
    connection = connect(server)
    connection.send(headers(1, Encoder().encode(MISSING_PSEUDO[name])))
    assert outcome(connection) in {("rst", PROTOCOL_ERROR), ("goaway", PROTOCOL_ERROR)}, name
    connection.close()


def test_content_length_must_match_the_data(server):
    connection = connect(server)
    connection.send(headers(1, block(("content-length", "10")), end_stream=False), DataFrame(1, b"short", flags=["END_STREAM"]))
    assert outcome(connection) in {("rst", PROTOCOL_ERROR), ("goaway", PROTOCOL_ERROR)}
    connection.close()


def test_trailers_with_a_pseudo_header_or_without_end_stream(server):
    connection = connect(server)
    connection.send(headers(1, block(("content-length", "1")), end_stream=False), DataFrame(1, b"x"),
                    headers(1, Encoder().encode([(":path", "/")])))
    assert outcome(connection) in {("rst", PROTOCOL_ERROR), ("goaway", PROTOCOL_ERROR)}
    connection.close()
    connection = connect(server)
    connection.send(headers(1, block(), end_stream=False), headers(1, Encoder().encode([("x-trailer", "1")]), end_stream=False))
    assert outcome(connection) in {("rst", PROTOCOL_ERROR), ("goaway", PROTOCOL_ERROR)}
    connection.close()


def test_stream_window_overflow_and_zero_increment_are_stream_errors(server):
    connection = connect(server)
    connection.send(headers(1, block(), end_stream=False), WindowUpdateFrame(1, 0x7FFFFFFF))
    assert outcome(connection) in {("rst", FLOW_CONTROL_ERROR), ("goaway", FLOW_CONTROL_ERROR)}
    connection.close()
    connection = connect(server)
    connection.send(headers(1, block(), end_stream=False), raw(0x8, 1, b"\x00\x00\x00\x00"))
    assert outcome(connection) in {("rst", PROTOCOL_ERROR), ("goaway", PROTOCOL_ERROR)}
    connection.close()


def test_a_stream_depending_on_itself_is_a_stream_error(server):
    connection = connect(server)
    connection.send(headers(1, block(), end_stream=False), PriorityFrame(1, depends_on=1, stream_weight=16))
    assert outcome(connection) in {("rst", PROTOCOL_ERROR), ("goaway", PROTOCOL_ERROR)}
    connection.close()


def test_the_preface_must_continue_with_settings(server):
    connection = RawH2(server.port)  # §3.4: no SETTINGS after the preface
    connection.send(PingFrame(0, b"12345678"))
    assert outcome(connection) == ("goaway", PROTOCOL_ERROR)
    assert closed_after(connection)
    connection.close()


def test_a_lower_stream_id_is_ignored_not_served(server):
    """RFC 9113 §5.1.1 makes a new stream id lower than a used one a connection error. nghttp2
    ignores such a HEADERS frame instead, on purpose: it cannot tell it from the trailers of a
    stream it reset that the client had not heard of yet. What matters here: it is not served."""
    connection = connect(server)
    encoder = Encoder()
    connection.send(headers(5, block(encoder=encoder)), headers(3, block(encoder=encoder)), headers(7, block(encoder=encoder)))
    ended = set()

    def both_ended(frame):
        # 5 and 7 go to the backend on two connections: their answers may come in either order.
        if isinstance(frame, DataFrame) and "END_STREAM" in frame.flags:
            ended.add(frame.stream_id)
        return ended >= {5, 7}

    frames = connection.frames(until=both_ended)
    answered = {f.stream_id for f in frames if isinstance(f, HeadersFrame)}
    assert answered == {5, 7}, answered
    assert not any(f.stream_id == 3 for f in frames), "stream 3 got nothing"
    connection.close()


def test_an_invalid_preface_is_not_taken_for_http2(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 4") or answer.startswith(b"HTTP/1.1 5"), answer[:60]


def test_pings_settings_and_unknown_frames_are_answered_or_ignored(server):
    connection = connect(server)
    connection.send(PingFrame(0, b"abcdefgh"), settings((0x99, 7), (0x3, 10)), raw(0xEE, 0, b"unknown"), headers(1, block()))
    frames = connection.frames(until=lambda f: isinstance(f, HeadersFrame))
    pings = [f for f in frames if isinstance(f, PingFrame)]
    assert pings and pings[0].opaque_data == b"abcdefgh" and "ACK" in pings[0].flags
    assert any(isinstance(f, SettingsFrame) and "ACK" in f.flags for f in frames), "both SETTINGS acknowledged"
    assert isinstance(frames[-1], HeadersFrame) and frames[-1].stream_id == 1, "the request was served"
    connection.close()


def test_server_preface_is_settings_with_the_limits(server):
    connection = RawH2(server.port)
    first = connection.frames(until=lambda f: isinstance(f, SettingsFrame))[0]
    assert isinstance(first, SettingsFrame) and "ACK" not in first.flags
    assert first.settings[SettingsFrame.MAX_CONCURRENT_STREAMS] == 100
    assert first.settings[SettingsFrame.MAX_HEADER_LIST_SIZE] == 65536
    assert first.settings[SettingsFrame.ENABLE_PUSH] == 0
    connection.close()


def test_rapid_reset_gets_enhance_your_calm_and_others_are_served(server):
    flood = connect(server)
    encoder = Encoder()
    frames = []
    for stream in range(1, 2 * 400, 2):
        frames += [headers(stream, block(encoder=encoder), end_stream=False), RstStreamFrame(stream, 8)]
    flood.send(*frames)
    goaways = [f for f in flood.frames(timeout=5, until=lambda f: isinstance(f, GoAwayFrame)) if isinstance(f, GoAwayFrame)]
    assert goaways and goaways[0].error_code == ENHANCE_YOUR_CALM
    flood.close()
    other = connect(server)
    other.send(headers(1, block()))
    assert outcome(other) == ("headers", 1)
    other.close()


def test_continuation_flood_ends_the_connection(server):
    connection = connect(server)
    data = block(("x-pad", "a" * 10))
    connection.send(headers(1, data[:4], end_headers=False), *[raw(0x9, 1, b"") for _ in range(50)])
    kind, value = outcome(connection)
    assert kind == "goaway" and value != NO_ERROR, (kind, value)
    assert closed_after(connection)
    connection.close()


def test_a_ping_flood_without_reading_holds_no_memory_and_others_are_served(server):
    """A client that sends PINGs and never reads the ACKs: the proxy stops reading it once its
    socket is full, so nothing queues up in the proxy."""
    before = rss_kib(server.process.pid)
    connection = connect(server)
    flood = PingFrame(0, b"12345678").serialize() * 4000
    connection.sock.settimeout(0.5)
    deadline = time.monotonic() + 4
    try:
        while time.monotonic() < deadline:
            connection.sock.sendall(flood)
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    grown = rss_kib(server.process.pid) - before
    assert grown < 16 * 1024 or not MEASURES_MEMORY, f"the proxy grew by {grown} KiB with the flood"
    other = connect(server)
    other.send(headers(1, block()))
    assert outcome(other) == ("headers", 1)
    other.close()
    connection.close()


def test_streams_over_the_limit_are_refused(tmp_path):
    backend = RecordingBackend()
    proxy = Proxy(str(tmp_path), [("v1", 100, [backend.address])], extra={"http2": {"max_concurrent_streams": 2}})
    try:
        connection = connect(proxy)
        connection.send(SettingsFrame(0, flags=["ACK"]))
        encoder = Encoder()
        connection.send(*[headers(stream, block(encoder=encoder), end_stream=False) for stream in (1, 3, 5)])
        frames = connection.frames(until=lambda f: isinstance(f, (RstStreamFrame, GoAwayFrame)))
        refused = [f for f in frames if isinstance(f, (RstStreamFrame, GoAwayFrame))]
        assert refused and refused[0].error_code in (REFUSED_STREAM, PROTOCOL_ERROR)
        connection.close()
    finally:
        proxy.stop()
        backend.stop()


def test_a_head_over_the_list_limit_resets_its_stream_only(server):
    connection = connect(server)
    encoder = Encoder()
    big = [(f"x-big-{i}", "v" * 1000) for i in range(80)]  # 80 KiB decoded, over 64 KiB
    connection.send(headers(1, block(*big, encoder=encoder)))
    kind, _ = outcome(connection)
    assert kind in ("rst", "goaway")
    if kind == "rst":
        connection.send(headers(3, block(encoder=encoder)))
        assert outcome(connection) == ("headers", 3), "the connection serves on"
    connection.close()


def test_an_answer_before_the_request_ended_asks_the_client_to_stop(server):
    """RFC 9113 §8.1: after a complete response to a request still being sent, RST_STREAM
    NO_ERROR; the stream does not stay open on the connection."""
    connection = connect(server)
    unauthenticated = Encoder().encode([(":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", "a")])
    connection.send(headers(1, unauthenticated, end_stream=False))
    frames = connection.frames(until=lambda f: isinstance(f, RstStreamFrame))
    assert any(isinstance(f, HeadersFrame) and f.stream_id == 1 for f in frames), "the 401 was sent first"
    resets = [f for f in frames if isinstance(f, RstStreamFrame)]
    assert resets and resets[0].stream_id == 1 and resets[0].error_code == NO_ERROR
    data_end = [i for i, f in enumerate(frames) if isinstance(f, DataFrame) and "END_STREAM" in f.flags]
    assert data_end and data_end[0] < frames.index(resets[0]), "the reset follows the whole answer"
    connection.close()
