"""HTTP/2 requests become HTTP/1.1 requests to the backends: what HTTP/1.1 would refuse is
refused here too, whatever `:scheme` says, and what must not cross stays behind, both ways."""
import json

import pytest
from hpack import Decoder, Encoder
from hyperframe.frame import DataFrame, HeadersFrame, RstStreamFrame

from harness import TOKEN, ChunkedRequestRecorder
from test_h2_conformance import connect, headers
from test_security import ScriptedBackend


def request(*fields, method="GET", scheme="http", path="/", authority="edge.test", encoder=None):
    base = [(":method", method), (":scheme", scheme), (":path", path), (":authority", authority),
            ("authorization", f"Bearer {TOKEN}")]
    return (encoder or Encoder()).encode(base + list(fields))


def answer(connection, stream=1):
    """(status, fields, body) of the response on `stream`; status "reset" for RST_STREAM."""
    decoder = Decoder()
    status, fields, body = None, {}, b""

    def last(frame):
        return frame.stream_id == stream and ("END_STREAM" in getattr(frame, "flags", set()) or isinstance(frame, RstStreamFrame))
    for frame in connection.frames(timeout=5, until=last):
        if isinstance(frame, RstStreamFrame) and frame.stream_id == stream and status is None:
            status = "reset"
        if isinstance(frame, HeadersFrame) and frame.stream_id == stream:
            for name, value in decoder.decode(frame.data):
                name, value = (name.decode(), value.decode()) if isinstance(name, bytes) else (name, value)
                if name == ":status":
                    status = int(value)
                else:
                    fields[name] = value
        elif isinstance(frame, DataFrame) and frame.stream_id == stream:
            body += frame.data
    return status, fields, body


@pytest.mark.parametrize("scheme, path, method", [
    ("foo", "http://evil.test/admin", "GET"),
    ("foo", "@evil.test/x", "GET"),
    ("foo", "admin", "GET"),
    ("foo", "*", "GET"),
    ("foo", "/a b", "GET"),
    ("foo", "/a\x7f", "GET"),
    ("ftp", "evil.test:21/x", "GET"),
])
def test_a_path_http_would_refuse_is_refused_whatever_the_scheme(recorder, proxy, scheme, path, method):
    backend = recorder("v1")
    server = proxy([("v1", 100, [backend.address])])
    connection = connect(server)
    connection.send(headers(1, request(scheme=scheme, path=path, method=method)))
    status, _, body = answer(connection)
    connection.close()
    # Refused by the proxy (400), or by nghttp2 before it (a stream error) for some bytes.
    assert status in (400, "reset"), (status, body)
    if status == 400:
        assert json.loads(body)["error"]["code"] == "bad_request"
    assert backend.requests == [], "nothing reached the backend"


def test_options_star_and_an_origin_path_with_another_scheme_pass(recorder, proxy):
    backend = recorder("v1")
    server = proxy([("v1", 100, [backend.address])])
    connection = connect(server)
    encoder = Encoder()
    connection.send(headers(1, request(scheme="foo", path="/x?y=1", encoder=encoder)))
    assert answer(connection, 1)[0] == 200
    connection.send(headers(3, request(method="OPTIONS", path="*", encoder=encoder)))
    assert answer(connection, 3)[0] == 200
    connection.close()
    assert [r["path"] for r in backend.requests] == ["/x?y=1", "*"]


def test_more_fields_than_limits_max_headers_get_431(recorder, proxy):
    backend = recorder("v1")
    server = proxy([("v1", 100, [backend.address])], extra={"limits": {"max_headers": 50}})
    connection = connect(server)
    connection.send(headers(1, request(*[(f"x-field-{i}", "v") for i in range(60)])))
    status, _, body = answer(connection)
    assert status == 431, body
    connection.send(headers(3, request(*[(f"x-field-{i}", "v") for i in range(40)])))
    assert answer(connection, 3)[0] == 200, "a head within the limit passes"
    connection.close()
    assert len(backend.requests) == 1


def test_a_path_over_limits_max_uri_bytes_gets_414(recorder, proxy):
    backend = recorder("v1")
    server = proxy([("v1", 100, [backend.address])], extra={"limits": {"max_uri_bytes": 1024}})
    connection = connect(server)
    connection.send(headers(1, request(path="/" + "a" * 2000)))
    assert answer(connection)[0] == 414
    connection.close()
    assert backend.requests == []


def test_a_malformed_body_before_anything_was_sent_is_a_502(started, proxy):
    backend = ScriptedBackend(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Before: 1\r\n\r\n"
                              b"5\r\nhello\r\n0\r\n\nX-Injected: 1\r\n\r\n")
    started.append(backend)
    server = proxy([("v1", 100, [backend.address])])
    connection = connect(server)
    connection.send(headers(1, request()))
    status, fields, body = answer(connection)
    connection.close()
    assert status == 502, (status, fields, body)
    assert "x-before" not in fields and b"hello" not in body
    assert json.loads(body)["error"]["code"] == "upstream_protocol_error"


def test_a_backends_host_field_stays_behind(started, proxy):
    backend = ScriptedBackend(b"HTTP/1.1 200 OK\r\nHost: internal.backend\r\nX-Kept: 1\r\nContent-Length: 2\r\n\r\nok")
    started.append(backend)
    server = proxy([("v1", 100, [backend.address])])
    connection = connect(server)
    connection.send(headers(1, request()))
    status, fields, body = answer(connection)
    connection.close()
    assert (status, body) == (200, b"ok")
    assert "host" not in fields and fields["x-kept"] == "1" and fields["x-anyscale-version"] == "v1"


def test_request_trailers_carry_no_cookie_forwarded_or_request_id(started, proxy):
    backend = ChunkedRequestRecorder()
    received = backend.received
    started.append(backend)
    server = proxy([("v1", 100, [backend.address])])
    connection = connect(server)
    encoder = Encoder()
    connection.send(headers(1, request(method="POST", encoder=encoder), end_stream=False), DataFrame(1, b"body"))
    trailers = encoder.encode([("x-checksum", "abc"), ("cookie", "session=stolen"), ("forwarded", "for=evil"),
                               ("x-request-id", "forged")])
    connection.send(headers(1, trailers))
    assert answer(connection)[0] == 200
    connection.close()
    _, body = received[0].split(b"\r\n\r\n", 1)
    assert b"x-checksum: abc" in body, body
    for forbidden in (b"cookie", b"forwarded", b"forged"):
        assert forbidden not in body.lower(), body
