import ArgumentParser
import Glibc
import SwitchyardProxy
import SwitchyardRouting

/// `switchyard upgrade --pid N`: SIGUSR2 to a running Switchyard, then its admin API until the
/// new process serves (exit 0) or the old one reports that the new one failed (exit 1).
struct Upgrade: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replace a running Switchyard with the binary now at its path, without refusing a connection.",
        discussion: """
            The running process starts the binary at its path again and hands it its listening sockets; once the \
            new one serves, the old one stops accepting, drains and exits. If the new one fails to start (a broken \
            binary or config), the old one keeps serving. Exit status: 0 upgraded, 1 failed (the old process serves).
            """)

    @OptionGroup var options: ConfigOption

    @Option(help: "The running Switchyard's process ID.")
    var pid: Int32

    @Option(help: "Its admin API's host:port (default: admin.address from the config file).")
    var admin: String?

    @Option(help: "Seconds to wait for the new process.")
    var timeout = 70

    func run() throws {
        var standardError = StandardError()
        do {
            let endpoint = try adminEndpoint()
            let before = try Self.status(endpoint)
            guard before["pid"]?.text == String(pid) else {
                throw AdminClient.Failure(description: "the admin API at \(endpoint) belongs to PID \(before["pid"]?.text ?? "?"), not \(pid)")
            }
            let previousAttempt = before["upgrade"]?["time"]?.text
            guard kill(pid, SIGUSR2) == 0 else {
                throw AdminClient.Failure(description: "cannot signal PID \(pid) (errno \(errno))")
            }
            let deadline = time(nil) + timeout
            while time(nil) < deadline {
                usleep(100_000)
                // The new process shares the admin socket: either may answer.
                guard let status = try? Self.status(endpoint) else { continue }
                if status["pid"]?.text != String(pid), status["upgraded_from"]?.text == String(pid) {
                    print("upgraded: PID \(pid) → \(status["pid"]?.text ?? "?"); PID \(pid) drains and exits")
                    return
                }
                if status["pid"]?.text == String(pid), let upgrade = status["upgrade"], upgrade["time"]?.text != previousAttempt {
                    switch upgrade["state"]?.text {
                    case "failed"?:
                        print("switchyard upgrade: \(upgrade["message"]?.text ?? "failed"); PID \(pid) still serves", to: &standardError)
                        throw ExitCode.failure
                    case "succeeded"?:
                        print("upgraded: PID \(pid) → \(upgrade["pid"]?.text ?? "?"); PID \(pid) drains and exits")
                        return
                    default: continue
                    }
                }
            }
            print("switchyard upgrade: no answer within \(timeout) s; see the log of PID \(pid)", to: &standardError)
            throw ExitCode.failure
        } catch let error as ExitCode {
            throw error
        } catch {
            print("switchyard upgrade: \(error)", to: &standardError)
            throw ExitCode.failure
        }
    }

    private func adminEndpoint() throws -> Endpoint {
        guard let admin else { return try ConfigLoader(configPath: options.config).server.admin }
        guard let endpoint = Endpoint(parsing: admin) else { throw ValidationError("--admin must be host:port, e.g. 127.0.0.1:9901") }
        return endpoint
    }

    private static func status(_ endpoint: Endpoint) throws -> JSONNode {
        try JSONParser.parse(try AdminClient.get("/status", from: endpoint), file: "GET /status")
    }
}
