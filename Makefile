# Switchyard — build, demo and tests. Installs missing Debian packages itself (as root, or
# with sudo), so `make run` and `make test` work on a fresh clone.

SWIFT     ?= swift
CONFIG    ?= config/switchyard.json
RELEASE   := .build/release/switchyard
DEBUG     := .build/debug/switchyard
SUDO      := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# Build: libnghttp2-dev, libssl-dev, pkg-config. Tests: curl, wrk, nghttp2-client (nghttp,
# h2load), python3 (via pip: pytest, uvicorn, the server Ray Serve runs, prometheus_client,
# whose parser reads /metrics, pyyaml, which reads `switchyard status`, sslyze, which scans
# the TLS listener, h2, which writes the HTTP/2 frames of the conformance tests, grpcio,
# a real gRPC client, ray[serve], a real Ray cluster that `switchyard deploy -f` deploys to,
# kubernetes-validate for the manifests and dockerfile, Docker's parser, for the
# Containerfile; systemd-analyze checks the unit).
DEB_PACKAGES := libnghttp2-dev libssl-dev pkg-config curl wrk openssl nghttp2-client systemd binutils

.PHONY: all deps bench-deps build release install run demo test unit-test integration-test check bench micro-bench fuzz sanitize clean

all: build

deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
	@python3 -c "import pytest, uvicorn, prometheus_client, yaml, sslyze, h2, grpc, ray.serve, kubernetes_validate, dockerfile" 2>/dev/null \
		|| python3 -m pip install -q pytest uvicorn prometheus_client pyyaml sslyze h2 grpcio "ray[serve]" kubernetes-validate dockerfile

build: deps
	$(SWIFT) build -c release

# The binary to ship: Swift's standard library and Foundation linked in, stripped. It needs
# only the C libraries (libc, libm, libstdc++, libgcc_s, libssl, libcrypto, libnghttp2).
STATIC_BUILD := .build-static
STATIC_BIN   := $(STATIC_BUILD)/switchyard
release: deps
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path $(STATIC_BUILD)
	strip -o $(STATIC_BIN) $(STATIC_BUILD)/release/switchyard
	@ls -l $(STATIC_BIN); ldd $(STATIC_BIN) | sed 's/ (0x.*//'

# make install [PREFIX=/usr/local] [DESTDIR=] [BINARY=…]: the binary (by default the static
# one, built if missing), its manual page, the systemd unit, example configs and the Grafana
# dashboard under share/switchyard.
PREFIX ?= /usr/local
DESTDIR ?=
BINARY ?= $(STATIC_BIN)
install:
	@test -x $(BINARY) || $(MAKE) --no-print-directory release
	install -D -m 0755 $(BINARY) $(DESTDIR)$(PREFIX)/bin/switchyard
	$(SWIFT) build --product generate-manual >/dev/null
	mkdir -p $(DESTDIR)$(PREFIX)/share/man/man1
	$$($(SWIFT) build --show-bin-path)/generate-manual $(BINARY) --output-directory $(DESTDIR)$(PREFIX)/share/man/man1
	install -D -m 0644 packaging/systemd/switchyard.service $(DESTDIR)$(PREFIX)/lib/systemd/system/switchyard.service
	sed -i 's#/usr/local/bin/switchyard#$(PREFIX)/bin/switchyard#' $(DESTDIR)$(PREFIX)/lib/systemd/system/switchyard.service
	install -D -m 0644 -t $(DESTDIR)$(PREFIX)/share/switchyard packaging/container/switchyard.json packaging/container/versions.json packaging/container/tokens.txt
	install -D -m 0644 -t $(DESTDIR)$(PREFIX)/share/switchyard/grafana packaging/grafana/switchyard.json
	install -D -m 0644 -t $(DESTDIR)$(PREFIX)/share/switchyard/kubernetes packaging/kubernetes/*.yaml

# Two demo backends (v1 on :8001, v2 on :8002; gRPC on :9001, :9002) and the proxy on :8080
# (admin :9901).
run: build
	@$(MAKE) --no-print-directory demo

# The demo with an already built binary (DEMO_BIN). Ctrl-C stops all three processes: the
# backends run in the background, where a non-interactive shell ignores SIGINT, so the trap
# stops them by their PIDs.
DEMO_BIN ?= $(RELEASE)
# The demo's HTTPS listener (:8443) uses a self-signed certificate made here on first run; its
# files are not committed (.gitignore).
DEMO_CERT := config/demo-tls.pem
DEMO_KEY  := config/demo-tls.key
$(DEMO_CERT):
	@openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
		-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
		-keyout $(DEMO_KEY) -out $(DEMO_CERT) 2>/dev/null
	@echo "made a self-signed demo certificate: $(DEMO_CERT)"

demo: $(DEMO_CERT)
	@$(DEMO_BIN) demo-backend --name v1 --port 8001 --grpc-port 9001 & v1=$$!; \
	$(DEMO_BIN) demo-backend --name v2 --port 8002 --grpc-port 9002 & v2=$$!; \
	trap 'kill $$v1 $$v2 2>/dev/null; wait $$v1 $$v2 2>/dev/null' EXIT INT TERM; \
	sleep 0.5; \
	echo; \
	echo "Try (the token is the demo token from config/tokens.txt):"; \
	echo "  curl -i -H 'Authorization: Bearer demo-token-change-me' http://127.0.0.1:8080/hello"; \
	echo "  curl -i -H 'Authorization: Bearer demo-token-change-me' -H 'X-ANYSCALE-VERSION: v1' http://127.0.0.1:8080/hello"; \
	echo "  curl -N -H 'Authorization: Bearer demo-token-change-me' 'http://127.0.0.1:8080/stream?chunks=5&interval_ms=300'"; \
	echo "  curl -i http://127.0.0.1:8080/hello                  # 401: no token"; \
	echo "  curl --cacert $(DEMO_CERT) -H 'Authorization: Bearer demo-token-change-me' https://localhost:8443/hello"; \
	echo "  curl --http2-prior-knowledge -H 'Authorization: Bearer demo-token-change-me' http://127.0.0.1:8080/hello"; \
	echo "  python3 docs/examples/grpc_call.py --version v2      # a gRPC call, pinned by metadata"; \
	echo "  curl -s http://127.0.0.1:9901/status                 # admin API (also /metrics)"; \
	echo "  $(DEMO_BIN) status          # versions, weights and endpoint health as YAML"; \
	echo "  kill one demo backend (v2 on :8002) and watch v2 turn UNHEALTHY and its share move to v1"; \
	echo "  edit config/versions.json (traffic_percent) and watch it reload; Ctrl-C stops everything"; \
	echo; \
	$(DEMO_BIN) serve --config $(CONFIG)

check: build
	$(RELEASE) check --config $(CONFIG)

test: unit-test integration-test

unit-test: deps
	$(SWIFT) build
	$(SWIFT) test

integration-test: deps release
	$(SWIFT) build
	SWITCHYARD_BIN=$(abspath $(DEBUG)) SWITCHYARD_STATIC_BIN=$(abspath $(STATIC_BIN)) python3 -m pytest -q Tests/integration

# Load comparison against HAProxy and nginx (about 15 minutes; `BENCH_ARGS=--quick` for 1),
# then reload latency. Writes Benchmarks/load/RESULTS.md; BENCH_ARGS=--update-docs also
# puts the table into docs/performance.md.
bench: build bench-deps
	python3 Benchmarks/load/bench.py $(BENCH_ARGS)
	python3 Benchmarks/reload/reload_latency.py

bench-deps: deps
	@missing=""; for p in nginx haproxy wrk strace; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

# Micro benchmarks (ordo-one/benchmark) checked against the thresholds in
# Benchmarks/micro/Thresholds: any allocation in a keep-alive request or an HTTP/2 stream, or a
# tripled p90 time, fails. Not part of `make test` (its first build takes a few minutes).
micro-bench: deps
	cd Benchmarks/micro && swift package benchmark thresholds check --path "$$PWD/Thresholds" --no-progress

# libFuzzer targets (with AddressSanitizer), each run for FUZZ_SECONDS, each built by
# Fuzz/build.sh from its Fuzz/ folder and the sources it tests:
#   framer-differential  the chunked body decoder against a strict reference written
#                        separately, both directions (decoding what peers send, re-encoding
#                        what the proxy sends on)
#   head-parser          hostile bytes to the request and response head parser
#   config-files         hostile versions.json, switchyard.json, tokens files and JSON
#   h1-exchange          a client connection end to end: hostile client bytes and backend
#                        bytes through H1ServerMachine, ExchangeMachine, H1ClientMachine and
#                        both body relays, as the worker drives them
#   probe-answer         hostile health-check answers read as the prober reads them, and the
#                        endpoint health machine fed the verdicts
#   h2-server            hostile bytes after the preface to the server side of an HTTP/2
#                        connection, answering every stream as the proxy does
#   h2-client            hostile backend bytes to the client side of an HTTP/2 connection
#                        with three calls in flight
#   h2-frames            the frame-header scanner behind the budget of frames without a
#                        request, against a reference, over bytes split anywhere
#   versions-edit        the admin API's deploy body, and versions files as deploy and
#                        revert edit them (written back stably, one generation on)
#   (config-files also checks the traffic plans of every accepted versions file)
# New inputs are kept in Fuzz/corpus/<target>. Swift's backtracer is off: libFuzzer reports a
# crash itself, and the backtracer would wait on the crashed process instead.
FUZZ_SECONDS ?= 300
comma := ,
space := $(empty) $(empty)
PROXY_MACHINES := Sources/SwitchyardProxy/H1ServerMachine.swift Sources/SwitchyardProxy/H1ClientMachine.swift \
                  Sources/SwitchyardProxy/ExchangeMachine.swift Sources/SwitchyardProxy/BodyRelay.swift \
                  Sources/SwitchyardProxy/ProxyError.swift Sources/SwitchyardProxy/ExchangeOutcome.swift
FUZZ_TARGETS := framer-differential:FramerDifferential:Sources/SwitchyardHTTP \
                head-parser:HeadParser:Sources/SwitchyardHTTP \
                config-files:ConfigFiles:Sources/SwitchyardRouting \
                h1-exchange:H1Exchange:Sources/SwitchyardHTTP,Sources/SwitchyardIO,$(subst $(space),$(comma),$(PROXY_MACHINES)) \
                probe-answer:ProbeAnswer:Sources/SwitchyardHTTP,Sources/SwitchyardProxy/ProbeAnswer.swift,Sources/SwitchyardProxy/EndpointHealth.swift \
                h2-server:H2Server:Sources/SwitchyardHTTP2,Fuzz/Shared/H2Feed.swift \
                h2-client:H2Client:Sources/SwitchyardHTTP2,Fuzz/Shared/H2Feed.swift \
                h2-frames:H2Frames:Sources/SwitchyardHTTP2/H2FrameScanner.swift \
                versions-edit:VersionsEdit:Sources/SwitchyardRouting,Sources/SwitchyardDeploy/VersionsDocument.swift,Sources/SwitchyardDeploy/VersionsEdit.swift
fuzz: deps
	@mkdir -p .build/fuzz
	@for spec in $(FUZZ_TARGETS); do \
		target=$${spec%%:*}; rest=$${spec#*:}; dir=$${rest%%:*}; sources=$$(echo $${rest#*:} | tr , ' '); \
		echo "== $$target: building"; \
		Fuzz/build.sh .build/fuzz/$$target $$dir $$sources || exit 1; \
		mkdir -p Fuzz/corpus/$$target Fuzz/seeds/$$target; \
		echo "== $$target: fuzzing for $(FUZZ_SECONDS) s"; \
		SWIFT_BACKTRACE=enable=no .build/fuzz/$$target -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -print_final_stats=1 \
			-artifact_prefix=.build/fuzz/$$target- Fuzz/corpus/$$target Fuzz/seeds/$$target || exit 1; \
	done

# Unit tests and the integration tests against a build with AddressSanitizer, then the
# integration tests against a build with ThreadSanitizer (each in its own build folder). A
# sanitizer report stops the proxy, which fails the test that was running.
ASAN_BUILD := .build-asan
TSAN_BUILD := .build-tsan
sanitize: deps
	$(SWIFT) build --sanitize=address --scratch-path $(ASAN_BUILD)
	LSAN_OPTIONS=suppressions=$(abspath Tests/lsan-suppressions.txt) $(SWIFT) test --sanitize=address --scratch-path $(ASAN_BUILD)
	SWITCHYARD_SANITIZED=1 SWITCHYARD_BIN=$(abspath $(ASAN_BUILD)/debug/switchyard) python3 -m pytest -q Tests/integration
	$(SWIFT) build --sanitize=thread --scratch-path $(TSAN_BUILD)
	SWITCHYARD_SANITIZED=1 TSAN_OPTIONS=halt_on_error=1 SWITCHYARD_BIN=$(abspath $(TSAN_BUILD)/debug/switchyard) \
		python3 -m pytest -q Tests/integration

clean:
	rm -rf .build .build-asan .build-tsan .build-static Benchmarks/micro/.build
