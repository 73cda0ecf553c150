"""What ships beside the binary: the Kubernetes manifests, the Grafana dashboard, the systemd
unit, the notifications systemd waits for, and several instances on one config directory."""
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import time

from prometheus_client.parser import text_string_to_metric_families

from harness import BINARY, Proxy, auth, free_port, http_get
from test_deploy import run

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PACKAGING = os.path.join(ROOT, "packaging")


def test_every_kubernetes_manifest_validates():
    manifests = sorted(glob.glob(os.path.join(PACKAGING, "kubernetes", "*.yaml")))
    assert len(manifests) >= 6
    result = subprocess.run(["kubernetes-validate", "--strict", "--kubernetes-version", "1.33.0", *manifests],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    for kind in ("configmap", "deployment", "service", "secret", "poddisruptionbudget"):
        assert f"passed for resource {kind}/" in result.stdout + result.stderr, result.stdout


def test_the_configmaps_versions_file_is_one_switchyard_reads(tmp_path):
    import yaml
    with open(os.path.join(PACKAGING, "kubernetes", "configmap.yaml")) as f:
        data = yaml.safe_load(f)["data"]
    json.loads(data["switchyard.json"])
    path = tmp_path / "versions.json"
    path.write_text(data["versions.json"])
    # Without a config beside it, `check --versions` reads the file as the proxy would, without
    # resolving the cluster's service names.
    run(str(tmp_path), "check", "--config", str(tmp_path / "none.json"), "--versions", str(path), check=0)


def dashboard_queries():
    with open(os.path.join(PACKAGING, "grafana", "switchyard.json")) as f:
        dashboard = json.load(f)
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_the_dashboard_asks_only_for_metrics_and_labels_the_proxy_exposes(demo, proxy):
    v1 = demo("v1")
    # Health checks on, and a dark version that refuses connections: every series the
    # dashboard draws has samples (endpoint health, connect failures, proxy errors).
    server = proxy([("v1", 100, [v1.address]), ("down", 0, [f"127.0.0.1:{free_port()}"])], extra={"health_check": True})
    for _ in range(5):
        assert http_get(server.port, "/", auth())[0] == 200
    assert http_get(server.port, "/", auth({"X-ANYSCALE-VERSION": "down"}))[0] == 502
    time.sleep(0.3)
    body = http_get(server.admin_port, "/metrics")[2].decode()
    labels = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    queries = dashboard_queries()
    assert len(queries) >= 12
    for query in queries:
        for name, selector in re.findall(r"(switchyard_[a-z_]+)(\{[^}]*\})?", query):
            assert name in labels, f"{name} (in {query}) is not in /metrics"
            for label in re.findall(r"([a-z_]+)\s*(?:=~|!=|=)", selector or ""):
                assert label == "instance" or label in labels[name], f"{name} has no label {label} (in {query})"
        for grouping in re.findall(r"by \(([^)]*)\)", query):
            names = re.findall(r"(switchyard_[a-z_]+)", query)
            for label in (part.strip() for part in grouping.split(",")):
                assert any(label in labels[name] for name in names), f"no metric in {query} has label {label}"


def test_the_systemd_unit_verifies(tmp_path):
    prefix = tmp_path / "usr"
    subprocess.run(["make", "-s", "install", f"PREFIX={prefix}", f"BINARY={BINARY}"], cwd=ROOT, check=True, capture_output=True)
    unit = prefix / "lib" / "systemd" / "system" / "switchyard.service"
    assert f"ExecStart={prefix}/bin/switchyard serve" in unit.read_text()
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_make_install_lays_out_the_files(tmp_path):
    destination = tmp_path / "root"
    subprocess.run(["make", "-s", "install", "PREFIX=/usr/local", f"DESTDIR={destination}", f"BINARY={BINARY}"],
                   cwd=ROOT, check=True, capture_output=True)
    installed = sorted(str(p.relative_to(destination)) for p in destination.rglob("*") if p.is_file())
    for expected in ("usr/local/bin/switchyard", "usr/local/lib/systemd/system/switchyard.service",
                     "usr/local/share/switchyard/switchyard.json", "usr/local/share/switchyard/versions.json",
                     "usr/local/share/switchyard/tokens.txt", "usr/local/share/man/man1/switchyard.1",
                     "usr/local/share/switchyard/grafana/switchyard.json"):
        assert expected in installed, installed
    assert os.access(destination / "usr/local/bin/switchyard", os.X_OK)
    assert "ExecStart=/usr/local/bin/switchyard serve" in (destination / "usr/local/lib/systemd/system/switchyard.service").read_text()
    manual = (destination / "usr/local/share/man/man1/switchyard.1").read_text()
    assert ".Dt SWITCHYARD 1" in manual and "deploy" in manual


class NotifySocket:
    """A unix datagram socket standing in for systemd's, as NOTIFY_SOCKET names it."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "notify.sock")
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(self.path)
        self.socket.settimeout(10)

    def next(self):
        return dict(line.split("=", 1) for line in self.socket.recv(4096).decode().splitlines())

    def stop(self):
        self.socket.close()


def test_systemd_is_told_ready_reloading_and_stopping(tmp_path, demo, started):
    v1 = demo("v1")
    notify = NotifySocket(str(tmp_path))
    started.append(notify)
    os.environ["NOTIFY_SOCKET"] = notify.path
    try:
        server = Proxy(str(tmp_path), [("v1", 100, [v1.address])])
    finally:
        del os.environ["NOTIFY_SOCKET"]
    started.append(server)
    ready = notify.next()
    assert ready["READY"] == "1" and ready["MAINPID"] == str(server.process.pid)
    # By then the listener answers.
    assert http_get(server.port, "/", auth())[0] == 200
    server.process.send_signal(1)  # SIGHUP
    assert notify.next()["RELOADING"] == "1"
    assert notify.next()["READY"] == "1"
    server.process.terminate()
    assert notify.next()["STOPPING"] == "1"
    assert server.process.wait(timeout=20) == 0


def test_three_instances_on_one_config_directory_follow_one_rename(tmp_path, demo, started):
    v1, v2 = demo("v1"), demo("v2")
    first = Proxy(str(tmp_path), [("v1", 100, [v1.address]), ("v2", 0, [v2.address])])
    started.append(first)
    # The others share the directory: the same switchyard.json, versions.json and tokens.
    others = []
    for _ in range(2):
        process = subprocess.Popen([BINARY, "serve", "--config", first.config_path],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = process.stdout.readline()
        match = re.search(r"listening on 127\.0\.0\.1:(\d+).*admin on 127\.0\.0\.1:(\d+)", line)
        assert match, line
        others.append((process, int(match.group(1)), int(match.group(2))))
    try:
        admins = [first.admin_port] + [admin for _, _, admin in others]
        ports = [first.port] + [port for _, port, _ in others]
        before = [json.loads(http_get(admin, "/status")[2])["generation"] for admin in admins]
        changed = time.monotonic()
        first.write_versions([("v1", 0, [v1.address]), ("v2", 100, [v2.address])])
        for admin, generation in zip(admins, before):
            while json.loads(http_get(admin, "/status")[2])["generation"] == generation:
                assert time.monotonic() - changed < 1.0, f"the instance on admin port {admin} missed the rename"
                time.sleep(0.01)
        for port in ports:
            status, headers, body = http_get(port, "/", auth())
            assert status == 200 and json.loads(body)["version"] == "v2"
    finally:
        for process, _, _ in others:
            process.terminate()
            assert process.wait(timeout=20) == 0


def test_the_containerfile_builds_the_static_binary_and_runs_it_unprivileged():
    # Images cannot be built here (no registry to pull the Swift and Debian bases from), so the
    # Containerfile is read with Docker's own parser and checked for what the image promises.
    import dockerfile
    commands = dockerfile.parse_file(os.path.join(PACKAGING, "container", "Containerfile"))
    stages = [c for c in commands if c.cmd == "FROM"]
    assert len(stages) == 2 and stages[0].value[-2:] == ("AS", "build")
    final = commands[commands.index(stages[1]):]
    build = commands[:commands.index(stages[1])]
    assert any("--static-swift-stdlib" in " ".join(c.value) for c in build if c.cmd == "RUN")
    user = [c for c in final if c.cmd == "USER"]
    assert user and not user[-1].value[0].startswith(("0", "root"))
    health = [c for c in final if c.cmd == "HEALTHCHECK"]
    assert health and "http://127.0.0.1:9901/healthz" in " ".join(health[0].value)
    assert any(c.cmd == "COPY" and "--from=build" in c.flags for c in final)
    for copy in (c for c in commands if c.cmd == "COPY" and not any(f.startswith("--from") for f in c.flags)):
        for source in copy.value[:-1]:
            assert os.path.exists(os.path.join(ROOT, source)), f"{source} (COPY in the Containerfile) does not exist"
    # The config it ships reads as Switchyard reads it.
    run(ROOT, "check", "--config", "/nonexistent.json", "--versions", os.path.join(PACKAGING, "container", "versions.json"), check=0)


STATIC_BIN = os.environ.get("SWITCHYARD_STATIC_BIN", os.path.join(ROOT, ".build-static", "switchyard"))


def test_the_release_binary_needs_no_swift_library_and_runs_with_an_empty_environment(tmp_path):
    assert os.path.exists(STATIC_BIN), f"{STATIC_BIN} is missing: `make release` builds it"
    libraries = subprocess.run(["ldd", STATIC_BIN], capture_output=True, text=True, check=True).stdout
    names = {line.split()[0] for line in libraries.splitlines() if line.strip()}
    assert not [name for name in names if "swift" in name.lower() or "Foundation" in name or "dispatch" in name], libraries
    allowed = ("linux-vdso", "libc.so", "libm.so", "libstdc++", "libgcc_s", "libssl", "libcrypto", "libnghttp2", "ld-linux")
    assert all(name.startswith(allowed) or "/ld-linux" in name for name in names), libraries
    # A copy outside the build tree, no PATH, no LD_LIBRARY_PATH: what a server has.
    copy = tmp_path / "switchyard"
    shutil.copy(STATIC_BIN, copy)
    result = subprocess.run(["env", "-i", str(copy), "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=10)
    assert result.returncode == 0 and re.fullmatch(r"\d+\.\d+\.\d+\S*\n", result.stdout), result
