"""TLS on client listeners with real clients (curl, openssl s_client, Python ssl) and
certificates made by the openssl CLI during the test run."""
import json
import os
import random
import re
import socket
import ssl
import subprocess
import time

from harness import BINARY, TOKEN, versions_json, wait_until


def make_certificate(directory, name, names, days=2):
    """A self-signed ECDSA P-256 certificate for `names` (DNS SANs); returns (cert, key)."""
    cert, key = os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", str(days), "-subj", f"/CN={names[0]}",
                    "-addext", "subjectAltName=" + ",".join(f"DNS:{n}" for n in names)],
                   check=True, capture_output=True)
    return cert, key


def make_expired_certificate(directory, name, host):
    """A certificate for `host` that expired yesterday: (cert, key)."""
    return make_dated_certificate(directory, name, host, from_days=-3, to_days=-1)


def make_dated_certificate(directory, name, host, from_days, to_days):
    """A certificate for `host` valid from `from_days` to `to_days` days from now (the openssl
    CLI cannot date one in the past, so the `cryptography` package, which sslyze brings, makes
    it): (cert, key)."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now + datetime.timedelta(days=from_days))
                   .not_valid_after(now + datetime.timedelta(days=to_days))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
                   .sign(key, hashes.SHA256()))
    cert, key_file = os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}.key")
    with open(cert, "wb") as f:
        f.write(certificate.public_bytes(serialization.Encoding.PEM))
    with open(key_file, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert, key_file


def tls_listener(tmp_path, **settings):
    a_cert, a_key = make_certificate(tmp_path, "a", ["a.test", "*.a.test"])
    b_cert, b_key = make_certificate(tmp_path, "b", ["b.test"])
    tls = {"certificates": [{"cert_file": "a.pem", "key_file": "a.key"}, {"cert_file": "b.pem", "key_file": "b.key"}]}
    tls.update(settings)
    return {"listeners": [{"address": "127.0.0.1:0"}, {"address": "127.0.0.1:0", "tls": tls}]}, a_cert, b_cert


def tls_port(server):
    ports = [int(port) for port in re.findall(r"127\.0\.0\.1:(\d+)", server.listening_line)]
    return ports[1]


def curl(port, host, cacert, *paths):
    """curl over HTTPS to `host` (resolved to 127.0.0.1); several paths reuse one connection."""
    arguments = []
    for path in paths or ("/",):
        if arguments:
            arguments.append("--next")
        arguments += ["-sS", "--cacert", cacert, "--resolve", f"{host}:{port}:127.0.0.1",
                      "-H", f"Authorization: Bearer {TOKEN}", "-w", "\n%{http_code} %{num_connects}\n", f"https://{host}:{port}{path}"]
    return subprocess.run(["curl", *arguments], capture_output=True, text=True, timeout=20)


def s_client(port, *arguments):
    result = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *arguments],
                            input="", capture_output=True, text=True, timeout=20)
    return result.stdout + result.stderr


def test_https_requests_with_sni_wildcards_and_keep_alive(recorder, proxy, tmp_path):
    backend = recorder("v1")
    extra, a_cert, b_cert = tls_listener(str(tmp_path))
    server = proxy([("v1", 100, [backend.address])], extra=extra)
    port = tls_port(server)
    # Two requests on one connection (curl reuses it), the default certificate.
    result = curl(port, "a.test", a_cert, "/first", "/second")
    assert result.returncode == 0, result.stderr
    assert [r["path"] for r in backend.requests] == ["/first", "/second"]
    assert "200 1" in result.stdout and "200 0" in result.stdout, "the second request reused the connection"
    assert backend.requests[0]["headers"]["x-forwarded-proto"] == "https"
    # SNI picks the certificate that names the host; a wildcard covers one label.
    assert curl(port, "b.test", b_cert).returncode == 0
    assert curl(port, "x.a.test", a_cert).returncode == 0
    assert curl(port, "b.test", a_cert).returncode != 0, "b.test must not be served a.test's certificate"
    assert "subject=CN = a.test" in s_client(port, "-noservername"), "no SNI: the first certificate"
    assert "subject=CN = b.test" in s_client(port, "-servername", "b.test")
    assert "ALPN protocol: h2" in s_client(port, "-alpn", "h2,http/1.1")
    assert "ALPN protocol: http/1.1" in s_client(port, "-alpn", "http/1.1")
    # Python's ssl module too, pinned to a version.
    context = ssl.create_default_context(cafile=a_cert)
    with socket.create_connection(("127.0.0.1", port)) as raw, context.wrap_socket(raw, server_hostname="a.test") as tls:
        tls.sendall(f"GET /py HTTP/1.1\r\nHost: a.test\r\nAuthorization: Bearer {TOKEN}\r\n"
                    "X-ANYSCALE-VERSION: v1\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200") and b"X-ANYSCALE-VERSION: v1" in answer
    assert re.search(rf"TLS on 127\.0\.0\.1:{port}: .*b\.pem \(/CN=b\.test\), expires in [12] days", server.wait_for_log("b.pem (/CN=b.test)"))


def test_old_protocols_and_plain_http_are_refused_clearly(recorder, proxy, tmp_path):
    backend = recorder("v1")
    extra, a_cert, _ = tls_listener(str(tmp_path))
    server = proxy([("v1", 100, [backend.address])], extra=extra)
    port = tls_port(server)
    for old in ("-tls1", "-tls1_1"):
        output = s_client(port, old)
        assert "Cipher is (NONE)" in output or "no protocols available" in output, output
    assert "New, TLSv1.2" in s_client(port, "-tls1_2")
    result = subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/", "-w", "\n%{http_code}"],
                            capture_output=True, text=True, timeout=20)
    body, code = result.stdout.rsplit("\n", 1)
    assert code == "400" and json.loads(body)["error"]["message"].startswith("this port speaks HTTPS")
    assert backend.requests == []


def test_min_version_1_3(recorder, proxy, tmp_path):
    backend = recorder("v1")
    extra, _, _ = tls_listener(str(tmp_path), min_version="1.3")
    server = proxy([("v1", 100, [backend.address])], extra=extra)
    port = tls_port(server)
    assert "Cipher is (NONE)" in s_client(port, "-tls1_2")
    assert "New, TLSv1.3" in s_client(port, "-tls1_3")


def test_a_stalled_handshake_is_closed_and_garbage_does_no_harm(recorder, proxy, tmp_path):
    backend = recorder("v1")
    extra, a_cert, _ = tls_listener(str(tmp_path))
    extra["timeouts"] = {"tls_handshake_ms": 300}
    server = proxy([("v1", 100, [backend.address])], extra=extra)
    port = tls_port(server)
    with socket.create_connection(("127.0.0.1", port)) as stalled:
        stalled.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, then nothing
        stalled.settimeout(5)
        started = time.time()
        assert stalled.recv(100) == b""
        assert time.time() - started < 2
    generator = random.Random(7)
    for index in range(10000):
        with socket.create_connection(("127.0.0.1", port)) as conn:
            if index % 2:
                payload = bytes(generator.getrandbits(8) for _ in range(generator.randrange(1, 600)))
            else:  # a plausible ClientHello record header with a random, truncated body
                payload = b"\x16\x03\x01" + generator.randrange(0, 65536).to_bytes(2, "big") + \
                    bytes(generator.getrandbits(8) for _ in range(generator.randrange(0, 300)))
            conn.sendall(payload)
    assert server.process.poll() is None
    assert curl(port, "a.test", a_cert).returncode == 0


def test_bad_certificates_stop_the_start_with_the_file_named(tmp_path, demo):
    v1 = demo("v1")
    cert, key = make_certificate(str(tmp_path), "good", ["good.test"])
    other_cert, other_key = make_certificate(str(tmp_path), "other", ["other.test"])
    (tmp_path / "versions.json").write_text(versions_json([("v1", 100, [v1.address])]))
    (tmp_path / "tokens.txt").write_text("t\n")
    (tmp_path / "notpem.pem").write_text("hello\n")

    def start(tls):
        (tmp_path / "switchyard.json").write_text(json.dumps({
            "listeners": [{"address": "127.0.0.1:0", "tls": tls}], "admin": {"address": "127.0.0.1:0"},
            "auth": {"tokens_file": "tokens.txt"}}))
        return subprocess.run([BINARY, "serve", "--config", str(tmp_path / "switchyard.json")],
                              capture_output=True, text=True, timeout=20)

    mismatch = start({"certificates": [{"cert_file": "good.pem", "key_file": "other.key"}]})
    assert mismatch.returncode != 0 and "other.key does not belong to the certificate in" in mismatch.stderr
    notpem = start({"certificates": [{"cert_file": "notpem.pem", "key_file": "good.key"}]})
    assert notpem.returncode != 0 and "notpem.pem: not a readable PEM certificate chain" in notpem.stderr
    missing = start({"certificates": [{"cert_file": "missing.pem", "key_file": "good.key"}]})
    assert missing.returncode != 0 and "listeners[0].tls" in missing.stderr and "missing.pem" in missing.stderr
    old = start({"certificates": [{"cert_file": "good.pem", "key_file": "good.key"}], "min_version": "1.1"})
    assert old.returncode != 0 and 'min_version must be "1.2" or "1.3"' in old.stderr
    make_expired_certificate(str(tmp_path), "expired", "good.test")
    expired = start({"certificates": [{"cert_file": "expired.pem", "key_file": "expired.key"}]})
    assert expired.returncode != 0 and "expired.pem: the certificate has expired" in expired.stderr


def serial_of(port, host="a.test"):
    output = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", host, "-showcerts"],
                            input="", capture_output=True, text=True, timeout=20).stdout
    certificate = output[output.index("-----BEGIN CERTIFICATE-----"):output.index("-----END CERTIFICATE-----") + 25]
    return subprocess.run(["openssl", "x509", "-noout", "-serial"], input=certificate, capture_output=True,
                          text=True).stdout.strip()


def test_certificates_rotate_by_rename_under_load_and_a_bad_one_is_kept_out(recorder, proxy, tmp_path):
    import threading
    backend = recorder("v1")
    extra, a_cert, _ = tls_listener(str(tmp_path))
    server = proxy([("v1", 100, [backend.address])], extra=extra)
    port = tls_port(server)
    before = serial_of(port)
    failures, requests, stop = [], [0], threading.Event()

    def load():
        context = ssl.create_default_context(cafile=a_cert)
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                        context.wrap_socket(raw, server_hostname="a.test") as tls:
                    tls.sendall(f"GET / HTTP/1.1\r\nHost: a.test\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n".encode())
                    answer = b""
                    while chunk := tls.recv(65536):
                        answer += chunk
                    if not answer.startswith(b"HTTP/1.1 200"):
                        failures.append(answer[:80])
            except (OSError, ssl.SSLError) as error:
                failures.append(repr(error))
            requests[0] += 1

    clients = [threading.Thread(target=load) for _ in range(4)]
    for client in clients:
        client.start()
    try:
        time.sleep(0.5)
        # A new pair for the same names, moved into place the way tools do: written aside, renamed.
        (tmp_path / "new").mkdir()
        new_cert, new_key = make_certificate(str(tmp_path / "new"), "a", ["a.test", "*.a.test"])
        os.rename(new_key, tmp_path / "a.key.tmp")
        os.rename(new_cert, tmp_path / "a.pem.tmp")
        os.rename(tmp_path / "a.key.tmp", tmp_path / "a.key")
        os.rename(tmp_path / "a.pem.tmp", tmp_path / "a.pem")
        deadline = time.time() + 5
        while serial_of(port) == before and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        stop.set()
        for client in clients:
            client.join()
    rotated = serial_of(port)
    assert rotated != before, "new handshakes use the new certificate"
    # The clients trusted the old a.pem only: after the swap they fail verification; what counts
    # is that the proxy never failed a request before it and never dropped a connection.
    proxy_failures = [f for f in failures if "CERTIFICATE_VERIFY_FAILED" not in f]
    assert proxy_failures == [] and requests[0] > 20, (proxy_failures[:3], requests[0])
    status = server.status()
    [listener] = status["tls"]
    assert listener["error"] is None and listener["certificates"][0]["subject"] == "/CN=a.test"

    # An invalid pair (the key of another certificate) keeps the one in use.
    _, other_key = make_certificate(str(tmp_path), "other", ["other.test"])
    os.rename(other_key, tmp_path / "a.key")
    deadline = time.time() + 5
    while server.status()["tls"][0]["error"] is None and time.time() < deadline:
        time.sleep(0.1)
    assert "does not belong to the certificate" in server.status()["tls"][0]["error"]
    assert serial_of(port) == rotated
    server.wait_for_log("the certificates loaded before stay in use")
    # So does an expired pair.
    (tmp_path / "expired").mkdir()
    expired_cert, expired_key = make_expired_certificate(str(tmp_path / "expired"), "a", "a.test")
    os.rename(expired_key, tmp_path / "a.key")
    os.rename(expired_cert, tmp_path / "a.pem")
    deadline = time.time() + 5
    while "has expired" not in (server.status()["tls"][0]["error"] or "") and time.time() < deadline:
        time.sleep(0.1)
    assert "a.pem: the certificate has expired" in server.status()["tls"][0]["error"]
    assert serial_of(port) == rotated
    metrics = __import__("harness").http_get(server.admin_port, "/metrics")[2].decode()
    assert re.search(r'switchyard_tls_certificate_expiry_seconds\{cert_file=".*a\.pem"\} \d+', metrics)


def test_sessions_resume_on_any_worker(recorder, proxy, tmp_path):
    backend = recorder("v1")
    extra, a_cert, _ = tls_listener(str(tmp_path))
    server = proxy([("v1", 100, [backend.address])], extra=extra, workers=2)
    port = tls_port(server)
    session = str(tmp_path / "session.pem")
    subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-sess_out", session],
                   input="", capture_output=True, text=True, timeout=20)
    # The kernel spreads connections over the workers' sockets: of several tries, all resume.
    reused = 0
    for _ in range(8):
        output = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-sess_in", session],
                                input="", capture_output=True, text=True, timeout=20).stdout
        reused += "Reused, TLSv1.2" in output
    assert reused == 8
    # Tickets are sealed with the process's keys, not the certificate's context: a session
    # still resumes after the certificates are reloaded.
    make_certificate(str(tmp_path), "a-next", ["a.test", "*.a.test"])
    os.rename(tmp_path / "a-next.key", tmp_path / "a.key")
    os.rename(tmp_path / "a-next.pem", tmp_path / "a.pem")
    wait_until(lambda: "reloaded" in server.log() and "TLS certificate" in server.log(), timeout=10, what=lambda: server.log())
    output = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-sess_in", session],
                            input="", capture_output=True, text=True, timeout=20).stdout
    assert "Reused, TLSv1.2" in output
    # TLS 1.3: a client uses each ticket once, so each resumption must bring the next ticket.
    request = "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
    previous = None
    for step in range(4):
        arguments = ["-sess_out", str(tmp_path / f"tls13-{step}.pem")] + (["-sess_in", previous] if previous else [])
        output = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_3", "-ign_eof", *arguments],
                                input=request, capture_output=True, text=True, timeout=20).stdout
        assert ("Reused, TLSv1.3" if previous else "New, TLSv1.3") in output, (step, output[-500:])
        previous = str(tmp_path / f"tls13-{step}.pem")


def test_tls_connections_over_the_limit_are_closed_and_counted(recorder, proxy, tmp_path):
    backend = recorder("v1")
    extra, _, _ = tls_listener(str(tmp_path))
    extra["limits"] = {"max_connections": 2}
    server = proxy([("v1", 100, [backend.address])], extra=extra, workers=1)
    port = tls_port(server)
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    try:
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", port)) as refused:
            refused.settimeout(5)
            assert refused.recv(100) == b"", "closed at once, without plain-text bytes a TLS client cannot read"
        assert server.settled_status()["connections_refused_over_limit"] == 1
    finally:
        for conn in held:
            conn.close()


def test_sslyze_finds_no_weak_protocol_cipher_or_renegotiation(recorder, proxy, tmp_path):
    """A scan by sslyze against Mozilla's "intermediate" configuration: the only finding allowed
    is the test certificate's trust (self-signed, made for this run)."""
    backend = recorder("v1")
    extra, _, _ = tls_listener(str(tmp_path))
    server = proxy([("v1", 100, [backend.address])], extra=extra)
    report = os.path.join(str(tmp_path), "sslyze.json")
    scan = subprocess.run(["python3", "-m", "sslyze", f"127.0.0.1:{tls_port(server)}", "--mozilla_config=intermediate",
                           "--json_out", report], capture_output=True, text=True, timeout=300)
    compliance = scan.stdout.partition("COMPLIANCE AGAINST TLS CONFIGURATION")[2]
    findings = [line.strip() for line in compliance.splitlines() if line.strip().startswith("* ")]
    assert findings == ["* certificate_path_validation: Certificate path validation failed for CN=a.test."], scan.stdout
    with open(report) as f:
        result = json.load(f)["server_scan_results"][0]["scan_result"]
    for protocol in ("ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1"):
        assert result[f"{protocol}_cipher_suites"]["result"]["accepted_cipher_suites"] == [], protocol
    for protocol in ("tls_1_2", "tls_1_3"):
        names = [suite["cipher_suite"]["name"] for suite in result[f"{protocol}_cipher_suites"]["result"]["accepted_cipher_suites"]]
        assert names and all("GCM" in name or "CHACHA20" in name for name in names), names
        assert protocol == "tls_1_3" or all(name.startswith("TLS_ECDHE_") for name in names), names
    renegotiation = result["session_renegotiation"]["result"]
    assert renegotiation["is_vulnerable_to_client_renegotiation_dos"] is False
    assert result["tls_compression"]["result"]["supports_compression"] is False
    assert result["heartbleed"]["result"]["is_vulnerable_to_heartbleed"] is False


def test_a_certificate_not_valid_yet_is_kept_out_on_reload(recorder, proxy, tmp_path):
    backend = recorder("v1")
    extra, _, _ = tls_listener(str(tmp_path))
    server = proxy([("v1", 100, [backend.address])], extra=extra)
    port = tls_port(server)
    before = serial_of(port)
    (tmp_path / "future").mkdir()
    cert, key = make_dated_certificate(str(tmp_path / "future"), "a", "a.test", from_days=2, to_days=30)
    os.rename(key, tmp_path / "a.key")
    os.rename(cert, tmp_path / "a.pem")
    deadline = time.time() + 5
    while "not valid yet" not in (server.status()["tls"][0]["error"] or "") and time.time() < deadline:
        time.sleep(0.1)
    assert "a.pem: the certificate is not valid yet" in server.status()["tls"][0]["error"]
    assert serial_of(port) == before, "the certificate in use stays"


def test_a_fifo_renamed_over_the_key_or_the_certificate_wedges_nothing(recorder, proxy, tmp_path):
    """OpenSSL never opens a path: the proxy reads the files (regular files only, non-blocking)."""
    import signal
    backend = recorder("v1")
    extra, _, _ = tls_listener(str(tmp_path))
    server = proxy([("v1", 100, [backend.address])], extra=extra)
    port = tls_port(server)
    before = serial_of(port)
    for name in ("a.key", "a.pem"):
        kept = (tmp_path / name).read_bytes()
        fifo = tmp_path / f"{name}.fifo"
        os.mkfifo(fifo)
        os.rename(fifo, tmp_path / name)
        deadline = time.time() + 5
        while "not a regular file" not in (server.status()["tls"][0]["error"] or ""):
            assert time.time() < deadline, server.status()["tls"][0]
            time.sleep(0.1)
        assert name in server.status()["tls"][0]["error"]
        assert serial_of(port) == before, "handshakes go on with the certificate in use"
        (tmp_path / f"{name}.tmp").write_bytes(kept)
        os.rename(tmp_path / f"{name}.tmp", tmp_path / name)
        wait_until(lambda: server.status()["tls"][0]["error"] is None, what=lambda: server.status()["tls"][0])
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=10) == 0


def test_plain_http_on_a_tls_port_gets_its_400_even_when_more_bytes_follow(recorder, proxy, tmp_path):
    """The proxy answers after the first bytes; the client's later bytes are read and dropped
    (a lingering close), not answered with a reset that would destroy the 400 unread."""
    backend = recorder("v1")
    extra, _, _ = tls_listener(str(tmp_path))
    server = proxy([("v1", 100, [backend.address])], extra=extra)
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", tls_port(server)), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n")
            time.sleep(0.2)
            sock.sendall(b"X-Pad: " + b"p" * 8000 + b"\r\n\r\n")
            time.sleep(0.2)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400 ") and b"use https://" in answer, answer[:200]
