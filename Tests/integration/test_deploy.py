"""`switchyard deploy`, `revert` and `history` as an Anyscale user runs them: the real binary in
a directory with config/switchyard.json, a running proxy that reloads what they write, and
requests that follow each split."""
import fcntl
import json
import math
import os
import re
import subprocess
import threading
import time

import pytest
import yaml

from harness import BINARY, TOKEN, Proxy, SynDroppingListener, auth, free_port, http_get, raw_exchange, wait_until
from test_routing import count_versions

SERVICE = "test_service"


def run(workdir, *args, check=None):
    result = subprocess.run([BINARY, *args], cwd=workdir, capture_output=True, text=True, timeout=60)
    if check is not None:
        assert result.returncode == check, f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def versions_arg(*shares):
    return json.dumps([{"name": name, "traffic_percent": percent} for name, percent in shares])


class Service:
    """A proxy whose config is `<workdir>/config/switchyard.json`, started with two versions."""

    def __init__(self, tmp_path, backends, extra=None, initial=None):
        self.workdir = str(tmp_path)
        self.config_dir = os.path.join(self.workdir, "config")
        os.makedirs(self.config_dir)
        versions = initial or json.dumps({"service": SERVICE, "versions": [
            {"name": "v1", "traffic_percent": 50, "endpoints": [backends["v1"].address]},
            {"name": "v2", "traffic_percent": 50, "endpoints": [backends["v2"].address]},
        ]}, indent=2)
        self.proxy = Proxy(self.config_dir, versions, extra=extra)
        self.versions_path = os.path.join(self.config_dir, "versions.json")

    def stop(self):
        self.proxy.stop()

    def deploy(self, *args, check=0):
        return run(self.workdir, "deploy", *args, check=check)

    def file_bytes(self):
        with open(self.versions_path, "rb") as f:
            return f.read()

    def file(self):
        return json.loads(self.file_bytes())

    def status_yaml(self):
        result = run(self.workdir, "status", "--admin", f"127.0.0.1:{self.proxy.admin_port}", check=0)
        return yaml.safe_load(result.stdout)

    def wait_for_generation(self, generation, timeout=10):
        deadline = time.monotonic() + timeout
        while (status := self.proxy.status())["versions_generation"] != generation:
            assert time.monotonic() < deadline, f"the proxy did not take generation {generation}: {status['last_reload']}"
            time.sleep(0.05)
        # Every worker routes with it.
        while len(set(status["workers"]["applied_generation"])) != 1 or status["workers"]["applied_generation"][0] != status["generation"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
            status = self.proxy.status()


@pytest.fixture
def service(tmp_path, demo, started):
    backends = {name: demo(name) for name in ("v1", "v2", "v3")}

    def make(**kwargs):
        made = Service(tmp_path, backends, **kwargs)
        started.append(made)
        return made
    make.backends = backends
    return make


def write_yaml(directory, name, fields):
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        yaml.safe_dump(fields, f)
    return path


def assert_split_followed(port, shares, total=4000):
    counts = count_versions(port, total, auth())
    assert sum(counts.values()) == total
    for name, percent in shares:
        p = percent / 100
        sigma = math.sqrt(total * p * (1 - p))
        assert abs(counts.get(name, 0) - p * total) <= 4 * sigma + 1, (shares, counts)
    assert set(counts) <= {name for name, percent in shares if percent > 0}, counts


def test_anyscales_four_commands_verbatim(service):
    svc = service()
    backends = service.backends
    for name in ("v1", "v2", "v3"):
        write_yaml(svc.workdir, f"config_{name}.yaml", {
            "name": SERVICE, "version_name": name, "image_uri": "anyscale/ray:2.9.0", "compute_config": "default",
            "endpoints": [backends[name].address]})
    steps = [
        ([("v1", 30), ("v2", 30), ("v3", 40)], ["-f", "config_v1.yaml", "-f", "config_v2.yaml", "-f", "config_v3.yaml"]),
        ([("v1", 10), ("v2", 60), ("v3", 30)], ["-f", "config_v3.yaml"]),
        ([("v1", 30), ("v2", 20), ("v3", 50)], ["-n", SERVICE]),
        ([("v1", 50), ("v3", 50)], ["-n", SERVICE]),
    ]
    for generation, (shares, more) in enumerate(steps, start=1):
        result = svc.deploy("--versions", versions_arg(*shares), *more)
        assert f"generation {generation - 1} → {generation}" in result.stdout
        if generation == 1:
            assert "v3: added at 40%" in result.stdout
            assert "config_v1.yaml: note: ignoring compute_config, image_uri" in result.stderr
        if generation == 4:
            assert "v2: removed (was 20%; requests in flight finish)" in result.stdout
        svc.wait_for_generation(generation)
        status = svc.status_yaml()
        assert status["versions_generation"] == generation
        assert [(v["name"], v["weight"]) for v in status["versions"]] == shares
        assert status["last_change"]["command"].startswith("deploy --versions")
        assert_split_followed(svc.proxy.port, shares)
    history = run(svc.workdir, "history", check=0).stdout
    assert history.startswith("generation 4 (current)")
    assert "generation 0  written by hand" in history


@pytest.mark.parametrize("shares, more, expected", [
    ([("v1", 50), ("v2", 49)], [], r"sum to 99, they must sum to 100 \(v2: 50 instead of 49 would do\)"),
    ([("v1", 50), ("v2", 51)], [], r"sum to 101, they must sum to 100"),
    ([("v1", 50), ("v1", 50)], [], r'version "v1" is listed twice'),
    ([("v1", 50), ("v3", 50)], [], r'version "v3" is new and has no endpoints; add --endpoint v3=HOST:PORT'),
    ([("v1", 100)], ["-n", "other_service"], r'names service "other_service"'),
    ([("v1", 100)], ["--endpoint", "v1=nonsense"], r"--endpoint v1=nonsense: write it NAME=HOST:PORT"),
])
def test_bad_input_exits_2_and_writes_nothing(service, shares, more, expected):
    svc = service()
    before = svc.file_bytes()
    result = svc.deploy("--versions", versions_arg(*shares), *more, check=2)
    assert re.search(expected, result.stderr), result.stderr
    assert svc.file_bytes() == before


def test_an_unknown_key_is_named_with_its_column(service):
    svc = service()
    before = svc.file_bytes()
    result = svc.deploy("--versions", '[{"name":"v1","traffic_percent":100,"weight":3}]', check=2)
    assert '--versions:1:37: unknown field "weight"' in result.stderr, result.stderr
    assert svc.file_bytes() == before


def blocked_waiters(directory):
    """How many processes wait for a lock on `directory` (from /proc/locks)."""
    inode = os.stat(directory).st_ino
    return sum(1 for line in open("/proc/locks") if "->" in line and line.split()[-3].endswith(f":{inode}"))


def test_two_deploys_at_once_one_wins_the_other_exits_3(service):
    svc = service()
    # Both read the file while a third writer holds the lock, so both saw generation 0.
    lock = os.open(svc.config_dir, os.O_RDONLY)
    fcntl.flock(lock, fcntl.LOCK_EX)
    racers = [subprocess.Popen([BINARY, "deploy", "--versions", versions_arg(("v1", share), ("v2", 100 - share))],
                               cwd=svc.workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for share in (20, 80)]
    wait_until(lambda: blocked_waiters(svc.config_dir) >= 2, timeout=10, what=lambda: "the deploys did not both wait for the lock")
    os.close(lock)
    results = [(racer.wait(timeout=20), *racer.communicate()) for racer in racers]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 3], results
    loser = next(err for code, _, err in results if code == 3)
    assert re.search(r"versions\.json changed since it was read \(generation 0 → 1 by \S+@\S+\); run again", loser), loser
    run(svc.workdir, "check", "--versions", svc.versions_path, check=0)
    assert svc.file()["generation"] == 1


def versions_lines(text):
    """The top-level versions array of a file as written, line for line."""
    match = re.search(r'\n  "versions": \[\n(.*?)\n  \]', text, re.S)
    return [line.strip().rstrip(",") for line in match.group(1).split("\n")]


def test_revert_restores_each_earlier_versions_array_byte_for_byte(service):
    svc = service()
    svc.deploy("--versions", versions_arg(("v1", 10), ("v2", 90)))
    states = {1: versions_lines(svc.file_bytes().decode())}
    svc.deploy("--versions", versions_arg(("v1", 20), ("v2", 70), ("v3", 10)), "--endpoint", f"v3={service.backends['v3'].address}")
    states[2] = versions_lines(svc.file_bytes().decode())
    svc.deploy("--versions", versions_arg(("v2", 100)))
    states[3] = versions_lines(svc.file_bytes().decode())
    generation = 3
    for target in (1, 2, 3, 2):
        result = run(svc.workdir, "revert", "--to", str(target), check=0)
        generation += 1
        assert f"generation {generation - 1} → {generation}" in result.stdout
        assert versions_lines(svc.file_bytes().decode()) == states[target]
        assert svc.file()["change"]["command"] == f"revert to {target}"
    # Without --to: the state before the current one.
    run(svc.workdir, "revert", check=0)
    assert versions_lines(svc.file_bytes().decode()) == states[3]
    svc.wait_for_generation(generation + 1)
    assert_split_followed(svc.proxy.port, [("v2", 100)], total=400)
    result = run(svc.workdir, "revert", "--to", "99", check=2)
    assert "generation 99 is not in the history" in result.stderr


def test_a_deploy_under_wrk_loses_nothing(service):
    svc = service()
    out = {}

    def load():
        out["wrk"] = subprocess.run(
            ["wrk", "-t2", "-c64", "-d4s", "-H", f"Authorization: Bearer {TOKEN}", f"http://127.0.0.1:{svc.proxy.port}/"],
            capture_output=True, text=True, timeout=30).stdout
    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(1)
    svc.deploy("--versions", versions_arg(("v1", 20), ("v2", 30), ("v3", 50)), "--endpoint", f"v3={service.backends['v3'].address}")
    time.sleep(1)
    svc.deploy("--versions", versions_arg(("v1", 100)))
    time.sleep(0.5)
    run(svc.workdir, "revert", check=0)
    thread.join()
    report = out["wrk"]
    requests = int(re.search(r"(\d+) requests in", report).group(1))
    assert requests > 1000, report
    assert "Non-2xx" not in report, report
    assert "Socket errors" not in report, report
    svc.wait_for_generation(3)


def test_versions_from_a_file_and_names_derived_from_the_config(service):
    svc = service()
    shares = os.path.join(svc.workdir, "split.json")
    with open(shares, "w") as f:
        f.write(versions_arg(("v1", 25), ("v2", 75)))
    svc.deploy("--versions", f"@{shares}")
    assert [v["traffic_percent"] for v in svc.file()["versions"]] == [25, 75]

    config = write_yaml(svc.workdir, "candidate.yaml", {"name": SERVICE, "endpoints": [service.backends["v3"].address]})
    first = svc.deploy("-f", config)
    name = re.search(r"(v-[a-z0-9]+): added at 0%", first.stdout).group(1)
    assert re.fullmatch(r"v-[a-z0-9]{10}", name)
    for _ in range(2):
        again = svc.deploy("-f", config)
        assert "no change" in again.stdout, again.stdout
        assert [v["name"] for v in svc.file()["versions"]] == ["v1", "v2", name]
    assert svc.file()["generation"] == 2
    # The new version takes pinned traffic only until the split gives it a share.
    svc.wait_for_generation(2)
    status, headers, body = http_get(svc.proxy.port, "/", auth({"X-ANYSCALE-VERSION": name}))
    assert status == 200 and json.loads(body)["version"] == "v3"


def test_dry_run_and_stdout_write_nothing(service):
    svc = service()
    before = svc.file_bytes()
    dry = svc.deploy("--versions", versions_arg(("v1", 90), ("v2", 10)), "--dry-run")
    assert "not written (dry run)" in dry.stdout and "v1: 50% → 90%" in dry.stdout
    printed = svc.deploy("--versions", versions_arg(("v1", 90), ("v2", 10)), "--stdout")
    assert svc.file_bytes() == before
    candidate = os.path.join(svc.workdir, "candidate.json")
    with open(candidate, "w") as f:
        f.write(printed.stdout)
    assert json.loads(printed.stdout)["generation"] == 1
    run(svc.workdir, "check", "--versions", candidate, check=0)


def test_the_audit_log_gets_every_write(service):
    svc = service(extra={"audit_log": "audit.jsonl"})
    svc.deploy("--versions", versions_arg(("v1", 10), ("v2", 90)))
    run(svc.workdir, "revert", check=0)
    with open(os.path.join(svc.config_dir, "audit.jsonl")) as f:
        records = [json.loads(line) for line in f]
    assert [r["generation"] for r in records] == [1, 2]
    assert [r["command"] for r in records] == [records[0]["command"], "revert to 0"]
    assert records[0]["command"].startswith("deploy --versions")
    assert [v["traffic_percent"] for v in records[1]["versions"]] == [50, 50]


def test_created_at_comes_from_the_file_and_survives_a_restart(service):
    svc = service()
    svc.deploy("--versions", versions_arg(("v1", 50), ("v2", 40), ("v3", 10)), "--endpoint", f"v3={service.backends['v3'].address}")
    svc.wait_for_generation(1)
    written = {v["name"]: v["created_at"] for v in svc.file()["versions"]}
    shown = {v["name"]: v["created_at"] for v in svc.proxy.status()["versions"]}
    assert shown == written
    svc.proxy.stop()
    svc.proxy = Proxy(svc.config_dir, svc.file_bytes().decode())
    assert {v["name"]: v["created_at"] for v in svc.proxy.status()["versions"]} == written


def test_status_says_updating_while_a_new_version_starts_and_ignores_a_dark_one_down(service):
    svc = service(extra={"health_check": {"path": "/", "interval_ms": 8000, "timeout_ms": 8000, "unhealthy_threshold": 1}})
    with SynDroppingListener() as silent:
        deadline = time.monotonic() + 10
        while svc.status_yaml()["state"] != "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        svc.deploy("--versions", versions_arg(("v1", 50), ("v2", 40), ("v3", 10)), "--endpoint", f"v3={silent.address}")
        svc.wait_for_generation(1)
        status = svc.status_yaml()
        assert status["state"] == "UPDATING", status
        assert {v["name"]: v["state"] for v in status["versions"]}["v3"] == "STARTING"
    # A dark version whose endpoint refuses: UNHEALTHY itself, the service RUNNING.
    closed = free_port()
    svc.deploy("--versions", versions_arg(("v1", 50), ("v2", 50), ("v3", 0)), "--endpoint", f"v3=127.0.0.1:{closed}")
    svc.wait_for_generation(2)
    deadline = time.monotonic() + 10
    while True:
        status = svc.status_yaml()
        if {v["name"]: v["state"] for v in status["versions"]}["v3"] == "UNHEALTHY":
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    assert status["state"] == "RUNNING", status


def test_a_rejected_reload_shows_in_the_yaml_status(service):
    svc = service()
    with open(svc.versions_path, "w") as f:
        f.write('{"service": "test_service", "versions": [{"name": "v1", "traffic_percent": 90, "endpoints": ["127.0.0.1:1"]}]}')
    deadline = time.monotonic() + 10
    while "reload_rejected" not in (status := svc.status_yaml()):
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    rejected = status["reload_rejected"]
    assert any("sum to 90" in error for error in rejected["errors"]), rejected
    assert rejected["since"] and rejected["since"] <= rejected["last_attempt"]
    # Fixing it by a revert-free deploy clears it.
    svc.deploy("--versions", versions_arg(("v1", 100)))
    deadline = time.monotonic() + 10
    while "reload_rejected" in (status := svc.status_yaml()):
        assert time.monotonic() < deadline, status
        time.sleep(0.05)


def admin_post(svc, path, body, token=None, padding=0):
    import http.client
    connection = http.client.HTTPConnection("127.0.0.1", svc.proxy.admin_port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    connection.request("POST", path, body=json.dumps(body) + " " * padding, headers=headers)
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    return response.status, answer


def test_the_write_api_is_off_without_a_token_file(service):
    svc = service()
    status, answer = admin_post(svc, "/v1/deploy", {"versions": [{"name": "v1", "traffic_percent": 100}]}, token="anything")
    assert status == 404 and "admin.write_token_file" in answer["error"]["message"]
    status, _ = admin_post(svc, "/v1/revert", {}, token="anything")
    assert status == 404


def test_deploy_and_revert_through_the_admin_api(service):
    secret = "write-secret-7f3a"
    svc = service(extra={"admin": {"address": "127.0.0.1:0", "write_token_file": "write-token"}})
    with open(os.path.join(svc.config_dir, "write-token"), "w") as f:
        f.write(secret + "\n")
    before = svc.file_bytes()
    body = {"versions": [{"name": "v1", "traffic_percent": 20}, {"name": "v3", "traffic_percent": 80}],
            "endpoints": {"v3": [service.backends["v3"].address]}}
    assert admin_post(svc, "/v1/deploy", body)[0] == 401
    assert admin_post(svc, "/v1/deploy", body, token="wrong")[0] == 403
    assert admin_post(svc, "/v1/deploy", {"versions": [{"name": "v1", "traffic_percent": 90}]}, token=secret)[0] == 400
    assert svc.file_bytes() == before

    # A body over 1 MiB is refused on its head alone; one of 300 KiB arrives in many reads.
    too_large = raw_exchange(svc.proxy.admin_port, b"POST /v1/deploy HTTP/1.1\r\nHost: a\r\nContent-Length: 2097152\r\n\r\n")
    assert too_large.startswith(b"HTTP/1.1 413 "), too_large
    status, answer = admin_post(svc, "/v1/deploy", body, token=secret, padding=300 << 10)
    assert status == 200, answer
    assert answer["generation"] == 1 and "v2: removed (was 50%; requests in flight finish)" in answer["changes"]
    assert svc.file()["change"]["actor"] == "admin-api"
    svc.wait_for_generation(1)
    assert_split_followed(svc.proxy.port, [("v1", 20), ("v3", 80)], total=2000)

    status, answer = admin_post(svc, "/v1/revert", {"to": 0}, token=secret)
    assert status == 200, answer
    assert [v["name"] for v in svc.file()["versions"]] == ["v1", "v2"]
    assert svc.file()["change"] == {**svc.file()["change"], "actor": "admin-api", "command": "revert to 0"}
    svc.wait_for_generation(2)
    assert secret not in svc.proxy.log()

    # The CLI through the admin API: the same write, by the proxy.
    token_file = os.path.join(svc.config_dir, "write-token")
    result = svc.deploy("--versions", versions_arg(("v1", 70), ("v2", 30)), "--admin", f"127.0.0.1:{svc.proxy.admin_port}",
                        "--admin-token-file", token_file)
    assert "generation 2 → 3 (written by the proxy" in result.stdout, result.stdout
    assert "v1: 50% → 70%" in result.stdout
    result = run(svc.workdir, "revert", "--admin", f"127.0.0.1:{svc.proxy.admin_port}", "--admin-token-file", token_file, check=0)
    assert "generation 3 → 4" in result.stdout
    assert [v["traffic_percent"] for v in svc.file()["versions"]] == [50, 50]
    assert run(svc.workdir, "revert", "--to", "42", "--admin", f"127.0.0.1:{svc.proxy.admin_port}",
               "--admin-token-file", token_file, check=2).stderr.count("not in the history") == 1
