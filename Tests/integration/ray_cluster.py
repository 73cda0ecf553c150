"""A real local Ray head node for the tests: its own ports (all chosen here, on loopback) and
its own temporary directory, stopped by the PIDs of its processes (never a bare `ray stop`,
which would stop every Ray on the machine)."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request


def free_ports(count):
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class RayHead:
    def __init__(self, python_path):
        # Ray's socket paths must stay short (AF_UNIX allows 107 bytes).
        self.temp_dir = tempfile.mkdtemp(prefix="sy-ray-", dir="/tmp")
        (gcs, dashboard, client, node_manager, object_manager, agent_listen, agent_grpc, runtime_env,
         metrics, self.serve_port, worker_low) = free_ports(11)
        self.dashboard = f"127.0.0.1:{dashboard}"
        env = dict(os.environ, PYTHONPATH=python_path, RAY_USAGE_STATS_ENABLED="0")
        self.process = subprocess.Popen(
            ["ray", "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
             "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
             f"--ray-client-server-port={client}", f"--node-manager-port={node_manager}",
             f"--object-manager-port={object_manager}", f"--dashboard-agent-listen-port={agent_listen}",
             f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={runtime_env}",
             f"--metrics-export-port={metrics}", f"--min-worker-port={worker_low}", f"--max-worker-port={worker_low + 40}",
             "--num-cpus=2", f"--temp-dir={self.temp_dir}", "--disable-usage-stats"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://{self.dashboard}/api/serve/applications/", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                output = self.process.stdout.read() if self.process.poll() is not None else ""
                self.stop()
                raise RuntimeError(f"Ray's dashboard did not come up at {self.dashboard}: {output[-3000:]}")
            time.sleep(0.5)

    def pids(self):
        """Every process of this node: its command line names its temporary directory, or it
        is in the session `ray start` leads."""
        session = os.getsid(self.process.pid) if self.process.poll() is None else None
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    command = f.read()
                in_session = session is not None and os.getsid(int(entry)) == session
            except OSError:
                continue
            if self.temp_dir.encode() in command or in_session:
                found.append(int(entry))
        return found

    def stop(self):
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            pids = self.pids()
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.2)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
