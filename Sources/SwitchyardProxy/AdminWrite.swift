import Glibc
import SwitchyardDeploy
import SwitchyardIO
import SwitchyardRouting

/// The admin API's write endpoints, off unless `admin.write_token_file` is set:
/// `POST /v1/deploy` and `POST /v1/revert` do what `switchyard deploy` and `revert` do, with
/// the same validation, compare-and-swap and history, recorded as `admin-api` (the file
/// watcher then reloads what they wrote, as after any other writer); `POST /v1/upgrade` does
/// what SIGUSR2 does (202: the new process is starting; `/status` says how it ended).
extension ControlPlane {
    /// How long a write waits for another writer's lock before answering 409.
    static let writeLockWaitMs = 2000

    func adminWrite(_ request: AdminRequest, path: String) -> (Int, String) {
        guard let tokenFile = loader.server.adminWriteTokenFile.map(loader.path) else {
            return (404, Self.errorBody("not_found", "the write API is off; set admin.write_token_file in the config to turn it on"))
        }
        guard request.method == "POST" else {
            return (405, Self.errorBody("method_not_allowed", "\(path) takes POST"))
        }
        switch authorize(request, tokenFile: tokenFile) {
        case .allowed: break
        case .missing: return (401, Self.errorBody("unauthorized", "send Authorization: Bearer <the token in admin.write_token_file>"))
        case .denied: return (403, Self.errorBody("forbidden", "the token is not the write token"))
        case .unreadable(let why): return (500, Self.errorBody("write_token_unreadable", why))
        }
        if path == "/v1/upgrade" {
            startUpgrade()
            guard let outcome = upgradeOutcome, outcome.state == .inProgress else {
                return (500, Self.errorBody("upgrade_failed", upgradeOutcome?.message ?? "not started"))
            }
            return (202, "{\"state\":\"in_progress\",\"pid\":\(outcome.pid),\"message\":\(JSONText.quote(outcome.message))}\n")
        }
        do throws(DeployError) {
            let store = try VersionsStore.read(loader.versionsPath)
            guard let current = store.document else { throw DeployError(.invalid, "\(loader.versionsPath) does not exist") }
            let next: VersionsDocument
            let summary: EditSummary
            if path == "/v1/deploy" {
                let deploy = try DeployRequest(body: request.body)
                (next, summary) = try current.deploying(deploy, by: Author(actor: "admin-api", command: "POST /v1/deploy"))
            } else {
                let target = try Self.revertTarget(request.body)
                let command = "revert to \((target ?? current.previousGeneration).map(String.init) ?? "?")"
                (next, summary) = try current.reverting(to: target, by: Author(actor: "admin-api", command: command))
            }
            do throws(LoadError) {
                _ = try loader.validateVersions(next.bytes, file: loader.versionsPath, resolving: false)
            } catch {
                throw DeployError(.invalid, "the result would not be a valid versions file, so nothing was written: \(error)")
            }
            try store.commit(next, wait: .milliseconds(Self.writeLockWaitMs), audit: loader.server.auditLog.map(loader.path))
            logger.notice("admin API wrote \(loader.versionsPath): generation \(current.generation) → \(next.generation) (\(path))")
            let changes = summary.text.map(JSONText.quote).joined(separator: ",")
            return (200, "{\"service\":\(JSONText.quote(next.service)),\"generation\":\(next.generation),\"previous_generation\":\(current.generation),\"changes\":[\(changes)]}\n")
        } catch {
            switch error.kind {
            case .invalid: return (400, Self.errorBody("invalid", error.description))
            case .conflict: return (409, Self.errorBody("conflict", error.description))
            case .failed: return (500, Self.errorBody("write_failed", error.description))
            }
        }
    }

    private enum Authorization {
        case allowed, missing, denied
        case unreadable(String)
    }

    /// The bearer token against the file's, read on each write so a rotated token takes
    /// effect at once; compared in constant time, never logged.
    private func authorize(_ request: AdminRequest, tokenFile: String) -> Authorization {
        guard let value = request.authorization, value.utf8.count > 7, value.utf8.prefix(7).elementsEqual("Bearer ".utf8) else { return .missing }
        let expected: [UInt8]
        do {
            expected = Self.trimmed(try FileIO.readAll(tokenFile))
        } catch {
            return .unreadable("admin.write_token_file \(tokenFile): cannot read (\(error))")
        }
        guard !expected.isEmpty else { return .unreadable("admin.write_token_file \(tokenFile) is empty") }
        return Self.constantTimeEqual(Array(value.utf8.dropFirst(7)), expected) ? .allowed : .denied
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(truncatingIfNeeded: a.count ^ b.count)
        for index in 0..<max(a.count, b.count) {
            difference |= (index < a.count ? a[index] : 0) ^ (index < b.count ? b[index] : 0)
        }
        return difference == 0 && a.count == b.count
    }

    private static func trimmed(_ bytes: [UInt8]) -> [UInt8] {
        let space: Set<UInt8> = [0x20, 0x09, 0x0A, 0x0D]
        return Array(bytes.drop { space.contains($0) }.reversed().drop { space.contains($0) }.reversed())
    }

    /// `{"to": N}`, `{}` or no body: the generation to go back to (nil: the previous one).
    private static func revertTarget(_ body: [UInt8]) throws(DeployError) -> Int? {
        guard !body.isEmpty else { return nil }
        let root: JSONNode
        do {
            root = try JSONParser.parse(body, file: "POST /v1/revert")
        } catch {
            throw DeployError(.invalid, error.description)
        }
        guard case .object(let members) = root.value, members.allSatisfy({ $0.key == "to" }) else {
            throw DeployError(.invalid, "POST /v1/revert: the body must be {\"to\": GENERATION} or {}")
        }
        guard let node = members.first?.node else { return nil }
        guard case .number(let text) = node.value, let generation = Int(text) else {
            throw DeployError(.invalid, "POST /v1/revert: \"to\" must be a whole number, a generation from switchyard history")
        }
        return generation
    }

    static func errorBody(_ code: String, _ message: String) -> String {
        "{\"error\":{\"code\":\"\(code)\",\"message\":\(JSONText.quote(message))}}\n"
    }
}
