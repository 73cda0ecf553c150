"""Floods of HTTP/2 frames that make no answer (no token needed to send them), and what they
cost the clients that share the flooder's worker: each connection reads at most
`Worker.readBudget` per turn, and frames that carry no request have a budget of their own
(`http2.overhead_frame_burst`, `http2.overhead_frames_per_second`), past which the connection
gets GOAWAY ENHANCE_YOUR_CALM. Run with `-s` to see the figures."""
import http.client
import os
import select
import socket
import ssl
import threading
import time

import pytest
from hpack import Encoder
from hyperframe.frame import DataFrame, Frame, GoAwayFrame, HeadersFrame, PriorityFrame, SettingsFrame, WindowUpdateFrame

from h2client import PREFACE
from harness import SANITIZED, TOKEN, http_get
from test_tls import make_certificate, tls_port

ENHANCE_YOUR_CALM = 0xB
# Victims share the flooder's worker; each answer must come within this (DESIGN: the flooder
# gets its turn, not the worker).
VICTIM_LIMIT_S = 0.25 if not SANITIZED else 1.0


def request_block():
    fields = [(":method", "GET"), (":scheme", "http"), (":path", "/hello"), (":authority", "flood.test"),
              ("authorization", f"Bearer {TOKEN}")]
    return Encoder().encode(fields)


def flood_bytes(kind):
    """What the flooder sends after its SETTINGS, and the chunk it then repeats."""
    if kind == "priority_tree":
        # PRIORITY frames over 50,000 idle streams, each depending on the one before.
        frames = [PriorityFrame(stream, depends_on=stream - 2 if stream > 1 else 0, stream_weight=16)
                  for stream in range(1, 100_001, 2)]
        return b"", b"".join(f.serialize() for f in frames)
    if kind == "connection_window":
        return b"", WindowUpdateFrame(0, 1).serialize() * 8000
    if kind == "empty_data_on_an_answered_stream":
        head = HeadersFrame(1, request_block())
        head.flags = {"END_HEADERS"}
        return head.serialize(), DataFrame(1, b"").serialize() * 8000
    raise ValueError(kind)


class Flooder:
    """Sends one chunk of frames again and again, and reads what comes back, until the proxy
    closes the connection or `seconds` pass; one thread, non-blocking, so TLS works too."""

    def __init__(self, port, kind, tls_host=None):
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        if tls_host:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            context.set_alpn_protocols(["h2"])
            raw = context.wrap_socket(raw, server_hostname=tls_host)
            assert raw.selected_alpn_protocol() == "h2"
        self.sock = raw
        first, self.chunk = flood_bytes(kind)
        self.sock.sendall(PREFACE + SettingsFrame(0).serialize() + first)
        self.sent = 0
        self.goaway = None
        self.closed = False
        self.received = b""

    def run(self, seconds):
        self.sock.setblocking(False)
        pending = memoryview(self.chunk)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.closed:
            readable, writable, _ = select.select([self.sock], [self.sock], [], 0.05)
            if readable or (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
                self._read()
            if writable and not self.closed:
                try:
                    count = self.sock.send(pending)
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                    continue
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    self.closed = True
                    break
                self.sent += count
                pending = pending[count:]
                if not pending:
                    pending = memoryview(self.chunk)
        self.sock.close()

    def _read(self):
        try:
            data = self.sock.recv(65536)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return
        except (ConnectionResetError, ssl.SSLError, OSError):
            self.closed = True
            return
        if not data:
            self.closed = True
            return
        self.received += data
        while len(self.received) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.received[:9]))
            if len(self.received) < 9 + length:
                break
            frame.parse_body(memoryview(self.received[9:9 + length]))
            self.received = self.received[9 + length:]
            if isinstance(frame, GoAwayFrame) and self.goaway is None:
                self.goaway = frame.error_code


def victims(port, stop, count=4):
    """Keep-alive HTTP/1.1 clients asking one after another until `stop`; their worst waits."""
    worst = [0.0] * count
    answered = [0] * count

    def client(index):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while not stop.is_set():
            started = time.monotonic()
            connection.request("GET", "/hello", headers={"Authorization": f"Bearer {TOKEN}"})
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            worst[index] = max(worst[index], time.monotonic() - started)
            answered[index] += 1
            time.sleep(0.01)
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads, worst, answered


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def flood_with_victims(server, kind, seconds, port, tls_host=None):
    flooder = Flooder(port, kind, tls_host)
    stop = threading.Event()
    threads, worst, answered = victims(server.port, stop)
    cpu_before = cpu_seconds(server.process.pid)
    started = time.monotonic()
    flooder.run(seconds)
    elapsed = time.monotonic() - started
    time.sleep(0.2)
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    cpu = cpu_seconds(server.process.pid) - cpu_before
    frames = flooder.sent // 9
    print(f"\n{kind}{' over TLS' if tls_host else ''}: {frames} frames in {elapsed:.2f} s "
          f"({frames / elapsed:,.0f}/s), proxy CPU {cpu / elapsed:.0%}, victims' worst wait "
          f"{max(worst) * 1000:.1f} ms over {sum(answered)} answers, GOAWAY {flooder.goaway}")
    return flooder, worst, answered


KINDS = ["priority_tree", "connection_window", "empty_data_on_an_answered_stream"]
# A budget no flood in these tests reaches, to see the per-turn limit alone.
UNLIMITED = {"overhead_frame_burst": 10_000_000, "overhead_frames_per_second": 10_000_000}


@pytest.mark.parametrize("kind", KINDS)
def test_a_flood_shares_the_worker_with_the_clients_on_it(demo, proxy, kind):
    server = proxy([("v1", 100, [demo("v1").address])], workers=1, extra={"http2": UNLIMITED})
    flooder, worst, answered = flood_with_victims(server, kind, 3.0, server.port)
    assert flooder.goaway is None and not flooder.closed, "the flood ran on, within its budget"
    assert flooder.sent // 9 > 10_000, "the flood reached the proxy"
    assert all(count > 5 for count in answered), f"every victim was answered again and again: {answered}"
    assert max(worst) < VICTIM_LIMIT_S, f"victims waited up to {max(worst) * 1000:.0f} ms"


def test_a_flood_over_tls_shares_the_worker_too(demo, proxy, tmp_path):
    make_certificate(tmp_path, "a", ["a.test"])
    listeners = [{"address": "127.0.0.1:0"},
                 {"address": "127.0.0.1:0", "tls": {"certificates": [{"cert_file": "a.pem", "key_file": "a.key"}]}}]
    server = proxy([("v1", 100, [demo("v1").address])], workers=1, extra={"listeners": listeners, "http2": UNLIMITED})
    flooder, worst, answered = flood_with_victims(server, "connection_window", 3.0, tls_port(server), tls_host="a.test")
    assert flooder.goaway is None and flooder.sent // 9 > 10_000
    assert all(count > 5 for count in answered), answered
    assert max(worst) < VICTIM_LIMIT_S, f"victims waited up to {max(worst) * 1000:.0f} ms"


def goaways(server, reason):
    text = http_get(server.admin_port, "/metrics")[2].decode()
    line = next(line for line in text.splitlines() if line.startswith(f'switchyard_http2_goaway_total{{reason="{reason}"}}'))
    return int(line.split()[-1])


@pytest.mark.parametrize("kind", KINDS)
def test_a_flood_ends_in_enhance_your_calm_by_default(demo, proxy, kind):
    server = proxy([("v1", 100, [demo("v1").address])], workers=1)
    flooder, worst, _ = flood_with_victims(server, kind, 5.0, server.port)
    assert flooder.goaway == ENHANCE_YOUR_CALM, f"GOAWAY {flooder.goaway}"
    assert flooder.closed, "the proxy closed the connection after its GOAWAY"
    assert max(worst) < VICTIM_LIMIT_S
    time.sleep(0.3)  # counters are published on the workers' 100 ms tick
    assert goaways(server, "overhead_frames") == 1


def test_a_burst_within_the_budget_is_served(demo, proxy):
    """The budget is far above what real clients send: h2load's 100,000 requests on 10
    connections pass, with the WINDOW_UPDATEs and SETTINGS they bring."""
    import subprocess
    server = proxy([("v1", 100, [demo("v1").address])], workers=1,
                   extra={"http2": {"overhead_frame_burst": 2000, "overhead_frames_per_second": 1000}})
    result = subprocess.run(["h2load", "-n", "20000", "-c", "4", "-m", "10", "-H", f"authorization: Bearer {TOKEN}",
                             f"http://127.0.0.1:{server.port}/hello"], capture_output=True, text=True, timeout=120)
    assert "20000 succeeded" in result.stdout, result.stdout
    time.sleep(0.3)
    assert goaways(server, "overhead_frames") == 0
