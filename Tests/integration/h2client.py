"""An HTTP/2 client for tests, on the `h2` package: many streams on one connection, with what
arrived on each and when, and raw frames (hyperframe) for the conformance cases."""
import socket
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
from hyperframe.frame import Frame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class Response:
    def __init__(self):
        self.headers = {}
        self.data = bytearray()
        # Monotonic times at which DATA frames arrived, with their sizes.
        self.data_times = []
        self.trailers = {}
        self.ended = False
        self.reset = None

    @property
    def status(self):
        return int(self.headers.get(":status", 0))

    @property
    def done(self):
        return self.ended or self.reset is not None


class H2Client:
    def __init__(self, port, ssl_context=None, server_hostname=None, settings=None):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = ssl_context.wrap_socket(raw, server_hostname=server_hostname) if ssl_context else raw
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.responses = {}
        self.goaway = None
        self.closed = False
        self.remote_settings = {}
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path, headers=None, method="GET", body=None, end_stream=True, authority="example.test"):
        stream = self.conn.get_next_available_stream_id()
        fields = [(":method", method), (":path", path), (":scheme", "http"), (":authority", authority)]
        fields += list((headers or {}).items())
        self.responses[stream] = Response()
        self.conn.send_headers(stream, fields, end_stream=end_stream and body is None)
        if body is not None:
            self.conn.send_data(stream, body, end_stream=end_stream)
        self.flush()
        return stream

    def receive(self, timeout=10):
        """Reads once and handles the events; False once the server closed."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            data = b""
        if not data:
            self.closed = True
            return False
        for event in self.conn.receive_data(data):
            self._handle(event)
        self.flush()
        return True

    def _handle(self, event):
        if isinstance(event, h2.events.ResponseReceived):
            self.responses[event.stream_id].headers = dict(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            response = self.responses[event.stream_id]
            response.data += event.data
            response.data_times.append((time.monotonic(), len(event.data)))
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            self.responses[event.stream_id].trailers = dict(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            self.responses[event.stream_id].ended = True
        elif isinstance(event, h2.events.StreamReset):
            if event.stream_id in self.responses:
                self.responses[event.stream_id].reset = event.error_code
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.remote_settings.update({key: value.new_value for key, value in event.changed_settings.items()})

    def wait(self, streams, timeout=10):
        """Reads until every stream in `streams` ended or was reset; returns their responses."""
        streams = [streams] if isinstance(streams, int) else streams
        deadline = time.monotonic() + timeout
        while not all(self.responses[s].done for s in streams):
            assert time.monotonic() < deadline, "timed out waiting for responses"
            if not self.receive(timeout=max(0.1, deadline - time.monotonic())):
                break
        return [self.responses[s] for s in streams]

    def wait_for(self, condition, timeout=10):
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            if not self.receive(timeout=max(0.1, deadline - time.monotonic())):
                return condition()
        return True

    def close(self):
        self.sock.close()


class RawH2:
    """Frames written by hand after the preface, for the cases a correct client never sends."""

    def __init__(self, port, preface=PREFACE):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buffer = b""
        if preface:
            self.sock.sendall(preface)

    def send(self, *frames):
        self.sock.sendall(b"".join(frame if isinstance(frame, bytes) else frame.serialize() for frame in frames))

    def frames(self, timeout=3.0, until=None):
        """Frames received until the server closes, `until(frame)` is true, or `timeout`."""
        received = []
        deadline = time.monotonic() + timeout
        while True:
            while len(self.buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
                if len(self.buffer) < 9 + length:
                    break
                frame.parse_body(memoryview(self.buffer[9:9 + length]))
                self.buffer = self.buffer[9 + length:]
                received.append(frame)
                if until and until(frame):
                    return received
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return received
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, ConnectionResetError):
                return received
            if not chunk:
                return received
            self.buffer += chunk

    def close(self):
        self.sock.close()
