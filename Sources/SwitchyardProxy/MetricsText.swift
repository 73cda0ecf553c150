import SwitchyardHTTP2
import SwitchyardIO
import SwitchyardRouting

/// `GET /metrics`: the workers' counters in the Prometheus text format 0.0.4. Built on the
/// control thread from what the workers published on their last tick (≤ 100 ms old).
enum MetricsText {
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    struct Inputs {
        /// Per version name, summed over the workers; "" holds requests that chose no version.
        var versions: [NamedVersionStats]
        var counters: ExchangeCounters
        var configured: [VersionsConfig.Version]
        /// The traffic plan in force (nil before the first publication).
        var plan: TrafficPlan?
        /// Every checked endpoint's health.
        var endpoints: [(version: String, address: SocketAddress, health: EndpointHealth)]
        var clientConnections: Int
        var backendSockets: Int
        /// The workers' descriptor budgets for client and backend sockets, summed.
        var descriptorBudget: Int
        /// Each TLS certificate in use: its file and expiry (Unix seconds).
        var certificates: [(file: String, notAfter: Int64)] = []
        /// Lines written and dropped; nil when there is no access log.
        var accessLog: (written: UInt64, dropped: UInt64)?
        var generation: UInt64
        var failedReloads: Int
        var reloads: ReloadState.ReloadCounts
        /// Summed over the workers, for the endpoints configured now.
        var connectFailures: [EndpointFailures]
    }

    static func render(_ inputs: Inputs) -> String {
        var out = ""
        family(&out, "switchyard_requests_total", "counter",
               "Finished requests by the status the client got (the proxy's own answers included), per version and route.")
        for entry in inputs.versions {
            for (route, codes) in [("weighted", entry.stats.weighted), ("pinned", entry.stats.pinned)] {
                for index in codes.indices where codes[index] != 0 {
                    out += "switchyard_requests_total{version=\(quote(entry.name)),route=\"\(route)\",code=\"\(index + 100)\"} \(codes[index])\n"
                }
            }
        }
        family(&out, "switchyard_requests_unanswered_total", "counter",
               "Requests that ended without a complete answer: the client left, or the response was cut off.")
        for entry in inputs.versions where entry.stats.withoutStatus != 0 {
            out += "switchyard_requests_unanswered_total{version=\(quote(entry.name))} \(entry.stats.withoutStatus)\n"
        }
        family(&out, "switchyard_proxy_errors_total", "counter", "Answers the proxy made itself and responses it cut off, by kind.")
        for entry in inputs.versions {
            for error in ProxyError.allCases where entry.stats.proxyErrors[error.rawValue] != 0 {
                out += "switchyard_proxy_errors_total{version=\(quote(entry.name)),kind=\"\(error.label)\"} \(entry.stats.proxyErrors[error.rawValue])\n"
            }
        }
        family(&out, "switchyard_grpc_calls_total", "counter",
               "Finished gRPC calls by the grpc-status the client got (the backend's, or the proxy's own answer's), per version.")
        for entry in inputs.versions {
            for code in entry.stats.grpcStatuses.indices where entry.stats.grpcStatuses[code] != 0 {
                out += "switchyard_grpc_calls_total{version=\(quote(entry.name)),grpc_status=\"\(code)\"} \(entry.stats.grpcStatuses[code])\n"
            }
        }
        let routed = inputs.versions.filter { !$0.name.isEmpty }
        histogram(&out, "switchyard_request_duration_seconds", "From the first byte of the request head to the last byte of the answer.",
                  routed.map { ($0.name, $0.stats.duration) })
        histogram(&out, "switchyard_upstream_response_first_byte_seconds",
                  "From the request reaching a backend connection to the first byte of its response.",
                  routed.map { ($0.name, $0.stats.firstByte) })
        family(&out, "switchyard_requests_in_flight", "gauge", "Requests routed to the version and not finished.")
        for entry in routed {
            out += "switchyard_requests_in_flight{version=\(quote(entry.name))} \(Int64(entry.stats.started) - Int64(entry.stats.finished))\n"
        }
        family(&out, "switchyard_bytes_total", "counter", "Bytes written to backends (request heads and bodies) and to clients.")
        for entry in inputs.versions {
            out += "switchyard_bytes_total{version=\(quote(entry.name)),direction=\"to_backend\"} \(entry.stats.bytesToBackends)\n"
            out += "switchyard_bytes_total{version=\(quote(entry.name)),direction=\"to_client\"} \(entry.stats.bytesToClients)\n"
        }
        let plan = inputs.plan ?? TrafficPlan(config: VersionsConfig(service: "", versions: inputs.configured),
                                              states: inputs.configured.map { _ in .running })
        family(&out, "switchyard_version_weight", "gauge",
               "Each version's share of unpinned traffic in percent: as configured, and as routed now that health is applied.")
        for (index, version) in inputs.configured.enumerated() {
            out += "switchyard_version_weight{version=\(quote(version.name)),kind=\"configured\"} \(version.trafficPercentText)\n"
            out += "switchyard_version_weight{version=\(quote(version.name)),kind=\"effective\"} \(ControlPlane.percentText(plan.effective[index]))\n"
        }
        family(&out, "switchyard_version_state", "gauge", "1 for the state each version is in (STARTING, RUNNING, UNHEALTHY), 0 for the others.")
        for (index, version) in inputs.configured.enumerated() {
            for state in [TrafficPlan.VersionState.starting, .running, .unhealthy] {
                out += "switchyard_version_state{version=\(quote(version.name)),state=\"\(state.rawValue)\"} \(plan.states[index] == state ? 1 : 0)\n"
            }
        }
        single(&out, "switchyard_fail_open", "gauge",
               "1 while unhealthy versions are routed to because no running version can take their share.", plan.failOpen ? 1 : 0)
        family(&out, "switchyard_endpoint_health", "gauge", "1 for the health state each checked endpoint is in, 0 for the others.")
        for entry in inputs.endpoints {
            for state in EndpointHealth.State.allCases {
                out += "switchyard_endpoint_health{version=\(quote(entry.version)),endpoint=\(quote(entry.address.description)),"
                    + "state=\"\(state.rawValue)\"} \(entry.health.state == state ? 1 : 0)\n"
            }
        }
        family(&out, "switchyard_upstream_connect_failures_total", "counter",
               "Failed connects (refused, timed out) per endpoint, while the endpoint is configured.")
        for entry in inputs.connectFailures {
            out += "switchyard_upstream_connect_failures_total{version=\(quote(entry.version)),endpoint=\(quote(entry.endpoint))} \(entry.failures)\n"
        }
        single(&out, "switchyard_upstream_retries_total", "counter", "Backend attempts after the first: the next endpoint, or a resend.", inputs.counters.retries)
        single(&out, "switchyard_connections_refused_total", "counter", "Client connections answered 503 for limits.max_connections.",
               inputs.counters.refusedConnections)
        family(&out, "switchyard_http2_goaway_total", "counter",
               "HTTP/2 client connections the proxy ended with GOAWAY, by reason (drain and idle timeouts included).")
        for reason in H2GoAwayReason.allCases {
            out += "switchyard_http2_goaway_total{reason=\"\(reason.label)\"} \(inputs.counters.http2GoAways[reason.rawValue])\n"
        }
        family(&out, "switchyard_auth_failures_total", "counter", "Requests refused for a missing or invalid Bearer token.")
        let auth = inputs.counters.rejected[ProxyError.missingToken.rawValue] + inputs.counters.rejected[ProxyError.invalidToken.rawValue]
        out += "switchyard_auth_failures_total \(auth)\n"
        single(&out, "switchyard_client_connections", "gauge", "Open client connections.", inputs.clientConnections)
        single(&out, "switchyard_descriptor_budget", "gauge",
               "Descriptors the workers may hold for client and backend sockets (the descriptor limit less a reserve).",
               inputs.descriptorBudget)
        family(&out, "switchyard_descriptors_in_use", "gauge", "Descriptors the workers hold, by kind of socket.")
        out += "switchyard_descriptors_in_use{kind=\"client\"} \(inputs.clientConnections)\n"
        out += "switchyard_descriptors_in_use{kind=\"backend\"} \(inputs.backendSockets)\n"
        single(&out, "switchyard_descriptor_waits_total", "counter",
               "HTTP/2 streams that waited for a backend socket because the descriptor budget was reached.", inputs.counters.descriptorWaits)
        if let log = inputs.accessLog {
            single(&out, "switchyard_access_log_lines_total", "counter", "Access-log lines written.", log.written)
            single(&out, "switchyard_access_log_dropped_total", "counter",
                   "Access-log lines dropped because the destination could not keep up or a write failed (traffic is never slowed for the log).",
                   log.dropped)
        }
        if !inputs.certificates.isEmpty {
            family(&out, "switchyard_tls_certificate_expiry_seconds", "gauge", "When each TLS certificate in use expires (Unix time).")
            for certificate in inputs.certificates {
                out += "switchyard_tls_certificate_expiry_seconds{cert_file=\(quote(certificate.file))} \(certificate.notAfter)\n"
            }
        }
        family(&out, "switchyard_build_info", "gauge", "Always 1; the version label says which Switchyard runs.")
        out += "switchyard_build_info{version=\(quote(BuildInfo.version))} 1\n"
        single(&out, "switchyard_config_generation", "gauge", "The generation of the configuration in force.", inputs.generation)
        single(&out, "switchyard_reload_failures_total", "counter", "Reloads rejected because a hot file was invalid.", inputs.failedReloads)
        family(&out, "switchyard_reloads_total", "counter", "Hot-file reloads (file change, SIGHUP) per file and result.")
        for file in ReloadState.ReloadCounts.File.allCases {
            for result in ReloadState.ReloadCounts.Result.allCases {
                out += "switchyard_reloads_total{file=\"\(file.label)\",result=\"\(result.label)\"} \(inputs.reloads[file, result])\n"
            }
        }
        return out
    }

    /// A family with one unlabelled sample.
    private static func single(_ out: inout String, _ name: String, _ type: String, _ help: String, _ value: some CustomStringConvertible) {
        family(&out, name, type, help)
        out += "\(name) \(value)\n"
    }

    private static func family(_ out: inout String, _ name: String, _ type: String, _ help: String) {
        out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
    }

    private static func histogram(_ out: inout String, _ name: String, _ help: String, _ series: [(String, VersionStats.Histogram)]) {
        family(&out, name, "histogram", help)
        for (version, histogram) in series {
            var cumulative: UInt64 = 0
            for (index, bound) in VersionStats.bucketBounds.enumerated() {
                cumulative += histogram.buckets[index]
                out += "\(name)_bucket{version=\(quote(version)),le=\"\(bound)\"} \(cumulative)\n"
            }
            out += "\(name)_bucket{version=\(quote(version)),le=\"+Inf\"} \(histogram.count)\n"
            out += "\(name)_sum{version=\(quote(version))} \(Double(histogram.sumNs) / 1e9)\n"
            out += "\(name)_count{version=\(quote(version))} \(histogram.count)\n"
        }
    }

    /// A label value: backslash, double quote and line feed escaped.
    private static func quote(_ value: String) -> String {
        var result = "\""
        for character in value {
            switch character {
            case "\\": result += "\\\\"
            case "\"": result += "\\\""
            case "\n": result += "\\n"
            default: result.append(character)
            }
        }
        return result + "\""
    }
}
