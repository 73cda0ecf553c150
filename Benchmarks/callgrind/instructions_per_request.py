#!/usr/bin/env python3
"""Instructions per keep-alive request, counted by callgrind: the same whatever else the machine
is doing, so it shows small request-path changes that timings on a shared VM cannot.

Each binary runs under valgrind with one worker behind the demo backend; one keep-alive
connection sends N requests; the count is (total for 2,500 requests − total for 500) / 2,000,
which removes start-up and shutdown. valgrind 3.19 cannot read Swift's DWARF 5, so the
binaries are copied and stripped of debug info first.

    python3 Benchmarks/callgrind/instructions_per_request.py OLD_BINARY .build/release/switchyard
"""
import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "Tests", "integration"))
import harness  # noqa: E402


def total_instructions(binary, backend, requests, directory):
    config = {"listeners": [{"address": "127.0.0.1:0"}], "admin": {"address": "127.0.0.1:0"}, "workers": 1,
              "versions_file": "versions.json", "auth": {"tokens_file": "tokens.txt"}}
    with open(os.path.join(directory, "switchyard.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(directory, "versions.json"), "w") as f:
        f.write(harness.versions_json([("v1", 100, [backend.address])]))
    with open(os.path.join(directory, "tokens.txt"), "w") as f:
        f.write(harness.TOKEN + "\n")
    output = os.path.join(directory, "callgrind.out")
    process = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={output}", binary, "serve",
         "--config", os.path.join(directory, "switchyard.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    port = int(harness.read_line_matching(process, r"listening on 127\.0\.0\.1:(\d+)", timeout=120).group(1))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(requests):
        connection.request("GET", "/", headers={"Authorization": f"Bearer {harness.TOKEN}"})
        connection.getresponse().read()
    connection.close()
    process.terminate()
    process.wait(timeout=120)
    with open(output) as f:
        return int(re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M).group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("binaries", nargs="+")
    args = parser.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("valgrind is needed (apt-get install valgrind)")
    backend = harness.DemoBackend("v1")
    try:
        for binary in args.binaries:
            directory = tempfile.mkdtemp(prefix="switchyard-callgrind-")
            stripped = os.path.join(directory, "switchyard")
            shutil.copy(binary, stripped)
            subprocess.run(["strip", "-g", stripped], check=True)
            small = total_instructions(stripped, backend, 500, directory)
            large = total_instructions(stripped, backend, 2500, directory)
            print(f"{binary}: {(large - small) / 2000:,.0f} instructions per keep-alive request")
            shutil.rmtree(directory, ignore_errors=True)
    finally:
        backend.stop()


if __name__ == "__main__":
    main()
