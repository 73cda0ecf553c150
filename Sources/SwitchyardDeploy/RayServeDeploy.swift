import Glibc
import SwitchyardRouting

/// Deploys a version's Ray Serve applications through Ray's REST API on the dashboard port,
/// and waits until every one of them is RUNNING: `PUT /api/serve/applications/`, then
/// `GET /api/serve/applications/` once a second.
public struct RayServeDeploy {
    public let file: ServiceConfigFile
    public let dashboard: ServiceConfigFile.RayDashboard
    public let serveConfig: JSONNode
    /// How long the applications may take to reach RUNNING.
    public let timeoutSeconds: Int

    public init?(_ file: ServiceConfigFile, timeoutSeconds: Int) {
        guard let dashboard = file.rayDashboard, let serveConfig = file.serveConfig else { return nil }
        self.file = file
        self.dashboard = dashboard
        self.serveConfig = serveConfig
        self.timeoutSeconds = timeoutSeconds
    }

    /// What one poll found of an application.
    struct Application: Equatable {
        let status: String
        let message: String
        let deployedAt: String
    }

    /// Deploys and waits; `progress` gets a line whenever the applications' states change.
    public func run(progress: (String) -> Void) throws(DeployError) {
        let cluster = "Ray Serve at \(dashboard.address)"
        let before = try poll()
        try send("PUT", body: Array(serveConfig.compactText.utf8))
        progress("\(file.versionName): deploying \(file.applications.joined(separator: ", ")) to \(cluster)")
        let started = Self.seconds()
        var shown = ""
        while true {
            let now = try poll()
            let states = file.applications.map { name in
                // Until Ray reports a deploy newer than the one before ours, it has not taken ours up.
                let state = now[name]
                let fresh = state != nil && (before[name] == nil || state!.deployedAt != before[name]!.deployedAt || Self.seconds() - started > 10)
                return (name, fresh ? state : nil)
            }
            let line = states.map { "\($0.0) \($0.1?.status ?? "PENDING")" }.joined(separator: ", ")
            if line != shown {
                progress("\(file.versionName): \(line)")
                shown = line
            }
            if let failed = states.first(where: { $0.1?.status == "DEPLOY_FAILED" }) {
                throw DeployError(.failed, """
                    \(file.path): application "\(failed.0)" failed to deploy on \(cluster): \(failed.1?.message ?? "") \
                    (no traffic was changed)
                    """)
            }
            if states.allSatisfy({ $0.1?.status == "RUNNING" }) { return }
            if Self.seconds() - started > Double(timeoutSeconds) {
                let messages = states.compactMap { state in state.1.flatMap { $0.message.isEmpty ? nil : "\(state.0): \($0.message)" } }
                throw DeployError(.failed, """
                    \(file.path): the applications are not RUNNING on \(cluster) after \(timeoutSeconds) s (\(line))\
                    \(messages.isEmpty ? "" : "; " + messages.joined(separator: "; ")); no traffic was changed \
                    (wait longer with --ray-timeout)
                    """)
            }
            usleep(1_000_000)
        }
    }

    private var headers: [(String, String)] {
        dashboard.token.map { [("Authorization", "Bearer \($0)")] } ?? []
    }

    @discardableResult
    private func send(_ method: String, body: [UInt8]? = nil) throws(DeployError) -> HTTPClient.Response {
        let response: HTTPClient.Response
        do {
            response = try HTTPClient.send(method, "/api/serve/applications/", to: dashboard.address, headers: headers, body: body, timeoutMs: 30_000)
        } catch {
            throw DeployError(.failed, "\(file.path): Ray's dashboard at \(dashboard.address): \(error); no traffic was changed")
        }
        guard response.status == 200 else {
            throw DeployError(.failed, """
                \(file.path): \(method) /api/serve/applications/ at \(dashboard.address) answered \(response.status): \
                \(response.text.prefix(2000)); no traffic was changed
                """)
        }
        return response
    }

    /// The applications Ray reports, by name.
    private func poll() throws(DeployError) -> [String: Application] {
        let response = try send("GET")
        let root: JSONNode
        do {
            root = try JSONParser.parse(response.body, file: "GET /api/serve/applications/")
        } catch {
            throw DeployError(.failed, "\(file.path): Ray's dashboard at \(dashboard.address) answered what is not JSON (\(error))")
        }
        var applications: [String: Application] = [:]
        for member in root[member: "applications"]?.members ?? [] {
            func text(_ key: String) -> String {
                switch member.node[member: key]?.value {
                case .string(let text)?, .number(let text)?: return text
                default: return ""
                }
            }
            applications[member.key] = Application(status: text("status"), message: text("message"), deployedAt: text("last_deployed_time_s"))
        }
        return applications
    }

    private static func seconds() -> Double {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }
}
