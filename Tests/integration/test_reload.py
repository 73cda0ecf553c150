"""Hot reload of the versions and tokens files, and `switchyard check`."""
import json
import os
import re
import signal
import subprocess
import time

from harness import BINARY, TOKEN, auth, http_get, versions_json, wait_until


def served_by(port, pin=None):
    extra = {"X-ANYSCALE-VERSION": pin} if pin else {}
    status, headers, _ = http_get(port, "/", auth(extra))
    return status, headers.get("x-anyscale-version")


def seconds_until(predicate):
    """How long until `predicate()` holds, polled every 2 ms (the reload latency is measured so)."""
    start = time.monotonic()
    wait_until(predicate, interval=0.002)
    return time.monotonic() - start


def all_workers_at(server, generation):
    status = server.status()
    return status["generation"] == generation and set(status["workers"]["applied_generation"]) == {generation}


def test_rename_takes_effect_within_100_ms(demo, proxy):
    v1, v2 = demo("v1"), demo("v2")
    server = proxy([("v1", 100, [v1.address]), ("v2", 0, [v2.address])])
    assert served_by(server.port) == (200, "v1")
    server.write_versions([("v1", 0, [v1.address]), ("v2", 100, [v2.address])])
    elapsed = seconds_until(lambda: all_workers_at(server, 2))
    assert elapsed < 0.1, f"reload took {elapsed * 1000:.0f} ms"
    assert {served_by(server.port)[1] for _ in range(20)} == {"v2"}
    assert server.status()["last_reload"]["outcome"] == "ok"


def test_in_place_rewrite_and_sighup_reload(demo, proxy, tmp_path):
    v1, v2 = demo("v1"), demo("v2")
    server = proxy([("v1", 100, [v1.address]), ("v2", 0, [v2.address])])
    with open(tmp_path / "versions.json", "w") as f:  # truncate and rewrite the same file
        f.write(versions_json([("v1", 0, [v1.address]), ("v2", 100, [v2.address])]))
    wait_until(lambda: all_workers_at(server, 2))
    # Unchanged content is not published again; SIGHUP re-reads.
    server.process.send_signal(signal.SIGHUP)
    wait_until(lambda: server.status()["last_reload"]["trigger"] == "SIGHUP")
    assert server.status()["generation"] == 2
    assert server.status()["last_reload"]["outcome"] == "unchanged"


def test_kubernetes_configmap_symlink_swap(demo, proxy, tmp_path):
    v1, v2 = demo("v1"), demo("v2")
    # Lay the directory out like a mounted ConfigMap: versions.json -> ..data/versions.json,
    # ..data -> ..2026_01_01 (a timestamped directory).
    first = tmp_path / "..2026_01_01"
    first.mkdir()
    (first / "versions.json").write_text(versions_json([("v1", 100, [v1.address]), ("v2", 0, [v2.address])]))
    os.symlink("..2026_01_01", tmp_path / "..data")
    server = proxy([("v1", 100, [v1.address]), ("v2", 0, [v2.address])])
    os.remove(tmp_path / "versions.json")
    os.symlink("..data/versions.json", tmp_path / "versions.json")
    second = tmp_path / "..2026_01_02"
    second.mkdir()
    (second / "versions.json").write_text(versions_json([("v1", 0, [v1.address]), ("v2", 100, [v2.address])]))
    os.symlink("..2026_01_02", tmp_path / "..data_tmp")
    os.rename(tmp_path / "..data_tmp", tmp_path / "..data")  # the atomic swap kubelet does
    wait_until(lambda: served_by(server.port) == (200, "v2"))


def test_invalid_rewrite_keeps_the_last_good_snapshot_and_check_names_the_error(demo, proxy, tmp_path):
    v1 = demo("v1")
    server = proxy([("v1", 100, [v1.address])])
    bad = '{"service": "test",\n "versions": [{"name": "v1", "traffic_percent": 90, "endpoints": ["%s"]}]}' % v1.address
    server.write_versions(bad)
    wait_until(lambda: server.status()["last_reload"]["outcome"] == "error")
    status = server.status()
    assert status["generation"] == 1 and status["failed_reloads"] == 1
    assert "sum to 90" in status["last_reload"]["errors"][0]
    assert served_by(server.port) == (200, "v1")
    check = subprocess.run([BINARY, "check", "--config", server.config_path], capture_output=True, text=True)
    assert check.returncode != 0
    assert re.search(r"versions\.json:2:\d+: traffic_percent values sum to 90, they must sum to 100", check.stderr), check.stderr


def test_check_prints_a_summary(demo, proxy):
    v1 = demo("v1")
    server = proxy([("v1", 100, [v1.address], {"health_check": True, "on_unhealthy": "fail"}), ("dark", 0, [v1.address])])
    check = subprocess.run([BINARY, "check", "--config", server.config_path], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert "v1: 100%" in check.stdout and "dark: 0% (dark" in check.stdout and v1.address in check.stdout
    assert "GET /-/healthz every 2000 ms, unhealthy after 2 failures; on_unhealthy fail" in check.stdout
    assert "no health check; on_unhealthy redistribute" in check.stdout and "no access log" in check.stdout


def test_token_rotation_reloads(demo, proxy, tmp_path):
    v1 = demo("v1")
    server = proxy([("v1", 100, [v1.address])])
    (tmp_path / "tokens.txt.tmp").write_text(f"{TOKEN}\nnew-token\n")
    os.rename(tmp_path / "tokens.txt.tmp", tmp_path / "tokens.txt")
    wait_until(lambda: http_get(server.port, "/", {"Authorization": "Bearer new-token"})[0] == 200)
    (tmp_path / "tokens.txt.tmp").write_text("new-token\n")
    os.rename(tmp_path / "tokens.txt.tmp", tmp_path / "tokens.txt")
    wait_until(lambda: http_get(server.port, "/", auth())[0] == 401)


def test_fifty_rewrites_under_load_drop_nothing(demo, proxy):
    v1, v2 = demo("v1"), demo("v2")
    server = proxy([("v1", 50, [v1.address]), ("v2", 50, [v2.address])])
    wrk = subprocess.Popen(
        ["wrk", "-t2", "-c64", "-d8s", "-H", f"Authorization: Bearer {TOKEN}", f"http://127.0.0.1:{server.port}/"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1)
    for i in range(50):
        share = 10 + (i % 9) * 10
        server.write_versions([("v1", share, [v1.address]), ("v2", 100 - share, [v2.address])])
        time.sleep(0.08)
    output = wrk.communicate(timeout=60)[0]
    assert server.status()["generation"] >= 40  # rewrites close together may coalesce
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    assert requests > 1000, output
    assert "Socket errors" not in output, output
    assert "Non-2xx" not in output, output


def test_anyscale_versions_array_and_crlf_tokens_are_accepted(demo, proxy, tmp_path):
    v1, v2 = demo("v1"), demo("v2")
    server = proxy([("v1", 100, [v1.address])])
    # The array given to Anyscale's --versions, with endpoints added, written by an editor on Windows.
    pasted = json.dumps([{"name": "v1", "traffic_percent": 0, "endpoints": [v1.address]},
                         {"name": "v2", "traffic_percent": 100, "endpoints": [v2.address]}])
    server.write_versions(pasted)
    (tmp_path / "tokens.tmp").write_bytes(b"# rotated\r\nnew-token\r\n")
    os.rename(tmp_path / "tokens.tmp", tmp_path / "tokens.txt")
    deadline = time.monotonic() + 5
    while True:
        status, headers, _ = http_get(server.port, "/", {"Authorization": "Bearer new-token"})
        if status == 200 and headers["x-anyscale-version"] == "v2":
            break
        assert time.monotonic() < deadline, server.status()
        time.sleep(0.05)
    assert server.status()["service"] == "versions" and server.status()["last_reload"]["errors"] == []


def test_all_errors_of_a_versions_file_are_reported(demo, proxy):
    v1 = demo("v1")
    server = proxy([("v1", 100, [v1.address])])
    server.write_versions(json.dumps([{"name": "v1", "traffic_percent": 80}, {"name": "v2", "traffic_percent": 20}]))
    wait_until(lambda: server.status()["last_reload"]["errors"])
    errors = server.status()["last_reload"]["errors"]
    assert len(errors) == 2 and all('needs the field "endpoints"' in error for error in errors), errors
    assert http_get(server.port, "/", auth())[0] == 200  # the last good configuration stays


def test_rapid_in_place_rewrites_are_not_reported_as_broken(demo, proxy, tmp_path):
    """Each rewrite truncates the file the proxy may still be reading after the previous one;
    a half-written read must be retried, not counted and logged as an invalid file."""
    v1, v2 = demo("v1"), demo("v2")
    server = proxy([("v1", 50, [v1.address]), ("v2", 50, [v2.address])])
    path = tmp_path / "versions.json"
    for index in range(300):
        text = versions_json([("v1", index % 100, [v1.address]), ("v2", 100 - index % 100, [v2.address])])
        with open(path, "w") as f:  # in place: truncate, then write in two parts
            f.write(text[:len(text) // 2])
            f.flush()
            f.write(text[len(text) // 2:])
    final = versions_json([("v1", 0, [v1.address]), ("v2", 100, [v2.address])])
    with open(path, "w") as f:
        f.write(final)
    wait_until(lambda: [v["traffic_percent"] for v in server.status()["versions"]] == [0, 100], what=lambda: server.status())
    time.sleep(0.5)
    status = server.status()
    assert status["failed_reloads"] == 0, status["last_reload"]


def test_a_replaced_config_directory_is_watched_again(demo, proxy, tmp_path):
    """The directory holding versions.json is moved away and a new one put in its place (a
    volume remounted, a deploy tool swapping directories): the watch must follow the path."""
    v1, v2 = demo("v1"), demo("v2")
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "versions.json").write_text(versions_json([("v1", 100, [v1.address])]))
    server = proxy([("v1", 100, [v1.address])], extra={"versions_file": "conf/versions.json"})
    os.rename(conf, tmp_path / "conf.old")
    conf.mkdir()
    (conf / "versions.tmp").write_text(versions_json([("v2", 100, [v2.address])]))
    os.rename(conf / "versions.tmp", conf / "versions.json")
    wait_until(lambda: http_get(server.port, "/", auth())[1]["x-anyscale-version"] == "v2", what=lambda: server.status())
    assert server.status()["failed_reloads"] == 0


def test_sighup_names_static_settings_that_need_a_restart(demo, proxy, tmp_path):
    v1 = demo("v1")
    server = proxy([("v1", 100, [v1.address])])
    config = json.loads((tmp_path / "switchyard.json").read_text())
    config["timeouts"] = {"connect_ms": 123}
    config["workers"] = 1
    (tmp_path / "switchyard.json").write_text(json.dumps(config))
    server.process.send_signal(signal.SIGHUP)
    wait_until(lambda: "apply only after a restart" in server.log(), what=lambda: server.log())
    server.wait_for_log("(workers, timeouts)")


def test_a_fixed_file_is_reported_as_recovered(demo, proxy):
    v1 = demo("v1")
    server = proxy([("v1", 100, [v1.address])])
    server.write_versions('{"service": "test", "versions": [}')
    wait_until(lambda: server.status()["last_reload"]["outcome"] == "error")
    assert "reload recovered" not in server.log()
    server.write_versions([("v1", 100, [v1.address]), ("v2", 0, [v1.address])])
    wait_until(lambda: server.status()["last_reload"]["outcome"] == "ok")
    wait_until(lambda: "reload recovered (file change)" in server.log())


def test_a_link_to_a_configmap_mounted_elsewhere_is_followed(demo, proxy, tmp_path):
    """versions.json -> /elsewhere/versions.json -> ..data/versions.json: the swap of
    ..data in the other directory is a change of the file the proxy reads."""
    v1, v2 = demo("v1"), demo("v2")
    mount = tmp_path / "mount"
    mount.mkdir()
    first = mount / "..2026_01_01"
    first.mkdir()
    (first / "versions.json").write_text(versions_json([("v1", 100, [v1.address]), ("v2", 0, [v2.address])]))
    os.symlink("..2026_01_01", mount / "..data")
    os.symlink("..data/versions.json", mount / "versions.json")
    server = proxy([("v1", 100, [v1.address]), ("v2", 0, [v2.address])])
    os.remove(tmp_path / "versions.json")
    os.symlink(mount / "versions.json", tmp_path / "versions.json")
    wait_until(lambda: served_by(server.port) == (200, "v1"))
    second = mount / "..2026_01_02"
    second.mkdir()
    (second / "versions.json").write_text(versions_json([("v1", 0, [v1.address]), ("v2", 100, [v2.address])]))
    os.symlink("..2026_01_02", mount / "..data_tmp")
    os.rename(mount / "..data_tmp", mount / "..data")
    wait_until(lambda: served_by(server.port) == (200, "v2"))
