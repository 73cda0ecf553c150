"""Starts the real switchyard binary and real backends on loopback ports chosen by the kernel."""
import http.server
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time

BINARY = os.environ.get("SWITCHYARD_BIN", os.path.abspath(".build/debug/switchyard"))
TOKEN = "test-token-1"
# Under a sanitizer (`make sanitize`) the proxy is several times slower, and AddressSanitizer
# keeps freed memory in a quarantine of up to 256 MiB, so RSS says nothing about what the proxy
# holds: memory bounds and start-up times are checked in the ordinary runs only.
SANITIZED = os.environ.get("SWITCHYARD_SANITIZED") == "1"
MEASURES_MEMORY = not SANITIZED


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def wait_until(predicate, timeout=5.0, interval=0.02, what=None):
    """Polls `predicate()` until it returns something true, and returns that. After `timeout`
    seconds it fails with `what()` (the state worth seeing) or the last value. The one way the
    tests wait for the proxy: a fixed sleep is either too short on a loaded machine or slow."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"not reached in {timeout} s: {what() if what else value!r}")
        time.sleep(interval)
    return value


def read_line_matching(process, pattern, timeout=20):
    """Reads the process's stdout until a line matches; returns the match."""
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        lines.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    errors = process.stderr.read() if process.poll() is not None else ""
    raise RuntimeError(f"no line matching {pattern!r}; got {lines!r}; exit {process.poll()}; stderr {errors!r}")


class DemoBackend:
    """`switchyard demo-backend`, the real binary, on a free port."""

    def __init__(self, name):
        self.name = name
        self.process = subprocess.Popen(
            [BINARY, "demo-backend", "--name", name, "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        match = read_line_matching(self.process, r"listening on (\S+):(\d+)")
        self.address = f"{match.group(1)}:{match.group(2)}"

    def stop(self):
        self.process.kill()
        self.process.wait()


class UvicornBackend:
    """uvicorn with h11 (what Ray Serve's HTTP proxy runs), recording what reaches it."""

    def __init__(self):
        import sys
        script = os.path.join(os.path.dirname(__file__), "uvicorn_backend.py")
        self.process = subprocess.Popen([sys.executable, script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        match = read_line_matching(self.process, r"listening on (\S+):(\d+)")
        self.address = f"{match.group(1)}:{match.group(2)}"
        self.port = int(match.group(2))

    def requests(self):
        return json.loads(http_get(self.port, "/__requests")[2])

    def stop(self):
        self.process.kill()
        self.process.wait()


class RecordingBackend:
    """A Python HTTP/1.1 server that records every request it receives."""

    def __init__(self, name="rec", port=0, tls=None):
        """`tls`: (cert file, key file) to serve HTTPS; each connection's handshake is then
        recorded in `handshakes` (True when it resumed a session)."""
        self.name = name
        self.requests = []
        self.handshakes = []
        # Set to answer every request with `Connection: close` (each request then needs a
        # new connection from the proxy).
        self.close_each = False
        # What `GET /-/healthz` answers (Ray Serve's health route): "ok" (200) or "draining"
        # (Ray's 503 "This node is being drained."). Probes are counted, not recorded.
        self.healthz = "ok"
        self.probes = 0
        self.disconnects = threading.Event()
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle(self):
                if tls:
                    try:
                        self.connection.do_handshake()
                    except (ssl.SSLError, OSError):
                        return
                    backend.handshakes.append(self.connection.session_reused)
                super().handle()

            def end_headers(self):
                if backend.close_each:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                super().end_headers()

            def handle_one(self):
                if self.path == "/-/healthz":
                    return self.health()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = read_chunked(self.rfile)
                backend.requests.append({"method": self.command, "path": self.path,
                                         "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                if self.path.startswith("/stream"):
                    return self.stream()
                payload = json.dumps({"version": backend.name, "path": self.path}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def health(self):
                backend.probes += 1
                draining = backend.healthz == "draining"
                payload = b"This node is being drained." if draining else b"success"
                self.send_response(503 if draining else 200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def stream(self):
                events = int(self.path.partition("events=")[2] or 200)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for index in range(events):
                        event = f"data: {index}\n\n".encode()
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                        self.wfile.flush()
                        time.sleep(0.05)
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    backend.disconnects.set()
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = do_OPTIONS = handle_one

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            # The handshake runs in the connection's thread (`handle`), not in accept.
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True, do_handshake_on_connect=False)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def read_chunked(stream):
    body = b""
    while True:
        size = int(stream.readline().split(b";")[0], 16)
        if size == 0:
            while stream.readline() not in (b"\r\n", b"\n", b""):
                pass
            return body
        body += stream.read(size)
        stream.readline()


def versions_json(versions, service="test"):
    """`versions`: (name, percent, endpoints) or (name, percent, endpoints, {more fields})."""
    return json.dumps({"service": service, "versions": [
        {"name": entry[0], "traffic_percent": entry[1], "endpoints": entry[2], **(entry[3] if len(entry) > 3 else {})}
        for entry in versions]}, indent=2)


class Proxy:
    """The real `switchyard serve` with a config written to a temporary directory."""

    def __init__(self, directory, versions, tokens=(TOKEN,), extra=None, workers=2, preexec_fn=None):
        self.directory = directory
        config = {
            "listeners": [{"address": "127.0.0.1:0"}],
            "admin": {"address": "127.0.0.1:0"},
            "workers": workers,
            "versions_file": "versions.json",
            "auth": {"tokens_file": "tokens.txt"},
            # Off unless a test asks: probes would add requests to what backends record.
            "health_check": False,
        }
        for key, value in (extra or {}).items():
            config[key] = value
        # A value of None leaves the setting out, to run with its default.
        config = {key: value for key, value in config.items() if value is not None}
        self.config_path = os.path.join(directory, "switchyard.json")
        with open(self.config_path, "w") as f:
            json.dump(config, f)
        self.write_versions(versions)
        with open(os.path.join(directory, "tokens.txt"), "w") as f:
            f.write("# test tokens\n" + "\n".join(tokens) + "\n")
        self.process = subprocess.Popen(
            [BINARY, "serve", "--config", self.config_path],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn)
        match = read_line_matching(self.process, r"listening on 127\.0\.0\.1:(\d+)\S* .*admin on 127\.0\.0\.1:(\d+)")
        self.listening_line = match.group(0)
        self.port = int(match.group(1))
        self.admin_port = int(match.group(2))
        # The log is read as it comes: a pipe nobody reads would block the proxy once full.
        self._log = []
        self._log_reader = threading.Thread(target=lambda: self._log.extend(self.process.stderr), daemon=True)
        self._log_reader.start()

    def log(self):
        """What the proxy logged so far (all of it once the process has exited)."""
        if self.process.poll() is not None:
            self._log_reader.join(timeout=5)
        return "".join(self._log)

    def wait_for_log(self, text, timeout=5.0):
        """The log once it contains `text`. The log is read by a thread of its own, so a line
        written just before an answer the test saw may not be in `log()` yet."""
        wait_until(lambda: text in self.log(), timeout, what=lambda: f"{text!r} is not in the log:\n{self.log()[-3000:]}")
        return self.log()

    def write_versions(self, versions, path=None):
        """Writes the versions file by write-then-rename (how editors and tools replace files)."""
        path = path or os.path.join(self.directory, "versions.json")
        temporary = path + ".tmp"
        with open(temporary, "w") as f:
            f.write(versions if isinstance(versions, str) else versions_json(versions))
        os.rename(temporary, path)

    def status(self):
        return json.loads(http_get(self.admin_port, "/status")[2])

    def settled_status(self):
        """/status once the workers' counters caught up: each worker copies them out on its
        100 ms tick, so after 250 ms of quiet every finished exchange is in."""
        time.sleep(0.25)
        return self.status()

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


class SynDroppingListener:
    """A listening socket whose accept queue is full: a connect to it hangs (the kernel drops
    the SYNs), as to a host that does not answer. Close it to let the held connections go."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(0)
        self.held = []
        while True:  # until a connect hangs: the queue is full
            try:
                self.held.append(socket.create_connection(self.socket.getsockname(), timeout=0.3))
            except TimeoutError:
                break
            assert len(self.held) < 16, "the accept queue never filled"
        self.address = f"127.0.0.1:{self.socket.getsockname()[1]}"

    def close(self):
        for connection in self.held:
            connection.close()
        self.socket.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def free_port():
    """A loopback port with nothing listening on it (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(port, path, headers=None, host="127.0.0.1"):
    """One request on a new connection with the stdlib client: (status, headers, body)."""
    import http.client
    connection = http.client.HTTPConnection(host, port, timeout=10)
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def raw_exchange(port, data, timeout=5):
    """Sends raw bytes; returns everything received until the server closes (or times out)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except socket.timeout:
            pass
        return received


def auth(extra=None):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    headers.update(extra or {})
    return headers


def read_head(conn):
    """Reads from a socket through the end of a message head; b"" if the peer closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    return data


def open_websocket(port, headers=None):
    """Opens a WebSocket through the proxy: (socket, response head, bytes after it)."""
    import base64
    key = base64.b64encode(os.urandom(16)).decode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head, rest = read_head(sock).split(b"\r\n\r\n", 1)
    return sock, head, rest


class FullBacklogListener:
    """A loopback listener whose accept queue is full: further SYNs are dropped (and retried by
    the client about a second later), like a host that does not answer. `release()` empties
    the queue so the listener can accept again."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.fillers = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(self.listener.getsockname())
            except BlockingIOError:
                pass
            self.fillers.append(filler)

    def release(self):
        for filler in self.fillers:
            filler.close()
        self.fillers = []

    def stop(self):
        self.release()
        self.listener.close()


class ThreadedSocketServer:
    """A raw TCP server on a free loopback port; `serve(conn)` runs in a thread per connection."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            try:
                self.serve(conn)
            except OSError:
                pass

    def serve(self, conn):
        raise NotImplementedError

    def stop(self):
        self.listener.close()


class ChunkedRequestRecorder(ThreadedSocketServer):
    """Takes one chunked request per connection as raw bytes (head, body and trailer
    section, exactly as the proxy sent them) into `received`, and answers 200."""

    def __init__(self):
        self.received = []
        super().__init__()

    def serve(self, conn):
        data = b""
        while not data.endswith(b"\r\n\r\n") or data.count(b"\r\n\r\n") < 2:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        self.received.append(data)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
