import Glibc
import SwitchyardIO
import SwitchyardRouting

/// Resolves the versions' endpoint names again, on its own thread: `getaddrinfo` blocks, and
/// the control thread must keep answering signals and the admin API meanwhile.
///
/// The control thread posts a request (the versions config it routes with and a ticket); the
/// answer comes back as `ControlMessage.resolved` with the same ticket, so an answer for a
/// config replaced in the meantime is recognised and dropped.
final class Resolver: Sendable {
    struct Request: Sendable {
        let ticket: UInt64
        let versions: VersionsConfig
    }

    private let requests: Mailbox<Request>
    private let loader: ConfigLoader
    private let answers: Mailbox<ControlMessage>

    init(loader: ConfigLoader, answers: Mailbox<ControlMessage>) throws(SystemError) {
        self.requests = try Mailbox()
        self.loader = loader
        self.answers = answers
    }

    func start() throws(SystemError) {
        try ThreadStarter.start(name: "resolver") { [self] in run() }
    }

    func resolve(_ versions: VersionsConfig, ticket: UInt64) {
        requests.post(Request(ticket: ticket, versions: versions))
    }

    private func run() {
        while true {
            // Block until a request is posted (the eventfd becomes readable).
            var poll = pollfd(fd: requests.eventFD, events: Int16(POLLIN), revents: 0)
            _ = Glibc.poll(&poll, 1, -1)
            // Only the newest request matters: older ones ask about configs since replaced.
            guard let request = requests.drain().last else { continue }
            let result: Result<ConfigLoader.Resolution, LoadError>
            do {
                result = .success(try loader.resolve(request.versions))
            } catch {
                result = .failure(error)
            }
            answers.post(.resolved(ticket: request.ticket, result: result))
        }
    }
}
