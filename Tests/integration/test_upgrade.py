"""Replacing the running binary without refusing a connection (SIGUSR2, `switchyard upgrade`),
and listening sockets handed in by systemd's socket activation."""
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time


from harness import BINARY, TOKEN, auth, free_port, http_get, read_line_matching


class Installed:
    """Switchyard run from a copy of the binary in its own directory, as on a server: an
    upgrade renames a new binary over the copy."""

    def __init__(self, directory, backend, extra=None):
        self.directory = str(directory)
        self.binary = os.path.join(self.directory, "switchyard")
        shutil.copy(BINARY, self.binary)
        self.config = os.path.join(self.directory, "switchyard.json")
        config = {"listeners": [{"address": "127.0.0.1:0"}], "admin": {"address": "127.0.0.1:0"}, "workers": 2,
                  "versions_file": "versions.json", "auth": {"tokens_file": "tokens.txt"}, "health_check": False,
                  "timeouts": {"drain_ms": 5000}, **(extra or {})}
        with open(self.config, "w") as f:
            json.dump(config, f)
        with open(os.path.join(self.directory, "versions.json"), "w") as f:
            json.dump({"service": "s", "versions": [{"name": "v1", "traffic_percent": 100, "endpoints": [backend.address]}]}, f)
        with open(os.path.join(self.directory, "tokens.txt"), "w") as f:
            f.write(TOKEN + "\n")
        self.process = subprocess.Popen([self.binary, "serve", "--config", self.config],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        match = read_line_matching(self.process, r"listening on 127\.0\.0\.1:(\d+).*admin on 127\.0\.0\.1:(\d+)")
        self.port, self.admin_port = int(match.group(1)), int(match.group(2))
        self.log_lines = []
        threading.Thread(target=lambda: self.log_lines.extend(self.process.stderr), daemon=True).start()

    def status(self):
        return json.loads(http_get(self.admin_port, "/status")[2])

    def replace_binary(self):
        """A new build renamed over the old one (the running process keeps its inode)."""
        temporary = self.binary + ".new"
        shutil.copy(BINARY, temporary)
        os.rename(temporary, self.binary)

    def upgrade(self, check):
        result = subprocess.run([self.binary, "upgrade", "--pid", str(self.process.pid), "--admin", f"127.0.0.1:{self.admin_port}"],
                                capture_output=True, text=True, timeout=90)
        assert result.returncode == check, result.stdout + result.stderr
        return result

    def stop(self):
        pids = {self.process.pid}
        try:
            pids.add(self.status()["pid"])
        except OSError:
            pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=20)
        deadline = time.monotonic() + 20
        for pid in pids - {self.process.pid}:
            while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
                time.sleep(0.05)


def under_wrk(port, seconds, during):
    out = {}

    def load():
        out["report"] = subprocess.run(
            ["wrk", "-t2", "-c64", f"-d{seconds}s", "-H", f"Authorization: Bearer {TOKEN}", f"http://127.0.0.1:{port}/"],
            capture_output=True, text=True, timeout=seconds + 30).stdout
    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(seconds / 3)
    during()
    thread.join()
    report = out["report"]
    requests = int(re.search(r"(\d+) requests in", report).group(1))
    return requests, report


def test_an_upgrade_under_load_loses_no_request(tmp_path, demo, started):
    installed = Installed(tmp_path, demo("v1"))
    started.append(installed)
    old = installed.process.pid
    outcome = {}

    def upgrade():
        installed.replace_binary()
        outcome["result"] = installed.upgrade(check=0)
    requests, report = under_wrk(installed.port, 10, upgrade)
    assert f"upgraded: PID {old} → " in outcome["result"].stdout
    assert requests > 2000, report
    assert "Socket errors" not in report, report
    assert "Non-2xx" not in report, report
    assert installed.process.wait(timeout=20) == 0, "the old process drains and exits 0"
    status = installed.status()
    assert status["pid"] != old and status["upgraded_from"] == old
    assert http_get(installed.port, "/", auth())[0] == 200
    log = "".join(installed.log_lines)
    assert "no longer accepting, draining" in log


def test_a_new_binary_with_a_broken_config_leaves_the_old_one_serving(tmp_path, demo, started):
    installed = Installed(tmp_path, demo("v1"))
    started.append(installed)
    old = installed.process.pid
    with open(installed.config) as f:
        good = f.read()
    outcome = {}

    def upgrade():
        with open(installed.config, "w") as f:
            f.write('{"listeners": [')
        outcome["result"] = installed.upgrade(check=1)
        with open(installed.config, "w") as f:
            f.write(good)
    requests, report = under_wrk(installed.port, 6, upgrade)
    assert "exited with status 1 before it served" in outcome["result"].stderr, outcome["result"].stderr
    assert "Socket errors" not in report and "Non-2xx" not in report, report
    assert requests > 1000, report
    status = installed.status()
    assert status["pid"] == old and status["upgrade"]["state"] == "failed"
    assert installed.process.poll() is None
    time.sleep(0.2)
    assert "upgrade failed" in "".join(installed.log_lines)
    # Fixed, the next upgrade goes through.
    installed.upgrade(check=0)
    assert installed.process.wait(timeout=20) == 0


def test_socket_activation_hands_in_the_listener(tmp_path, demo, started):
    backend = demo("v1")
    port = free_port()
    directory = str(tmp_path)
    config = {"listeners": [{"address": f"127.0.0.1:{port}"}], "admin": {"address": "127.0.0.1:0"}, "workers": 1,
              "versions_file": "versions.json", "auth": {"tokens_file": "tokens.txt"}, "health_check": False}
    with open(os.path.join(directory, "switchyard.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(directory, "versions.json"), "w") as f:
        json.dump({"service": "s", "versions": [{"name": "v1", "traffic_percent": 100, "endpoints": [backend.address]}]}, f)
    with open(os.path.join(directory, "tokens.txt"), "w") as f:
        f.write(TOKEN + "\n")
    # systemd-socket-activate listens and starts the proxy on the first connection, with the
    # socket as descriptor 3 (LISTEN_FDS=1, LISTEN_PID set).
    activator = subprocess.Popen(["systemd-socket-activate", "-l", f"127.0.0.1:{port}", BINARY, "serve", "--config",
                                  os.path.join(directory, "switchyard.json")],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                status, headers, body = http_get(port, "/", auth())
                break
            except ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert status == 200 and json.loads(body)["version"] == "v1"
        assert http_get(port, "/", auth())[0] == 200
    finally:
        os.killpg(activator.pid, signal.SIGTERM)
        activator.wait(timeout=20)
    assert "cannot listen" not in activator.stderr.read()
