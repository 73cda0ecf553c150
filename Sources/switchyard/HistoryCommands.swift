import ArgumentParser
import SwitchyardDeploy
import SwitchyardRouting

/// `switchyard revert`: an earlier state of the versions file, exactly, as a new generation.
struct Revert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write an earlier generation's versions again (default: the one before the current).",
        discussion: "Exit status: 0 written, 2 no such generation (nothing written), 3 the versions file changed since it was read (run again).")

    @OptionGroup var options: ConfigOption

    @Option(help: "The generation to go back to (see switchyard history).")
    var to: Int?

    @OptionGroup var write: WriteOptions

    func run() throws {
        try runWriting("revert") {
            if write.admin != nil {
                let body = to.map { "{\"to\":\($0)}" } ?? "{}"
                try write.sendToAdmin("/v1/revert", body: Array(body.utf8), configPath: options.config)
                return
            }
            let target = try VersionsTarget(configPath: options.config, versionsFile: write.versionsFile)
            let store = try VersionsStore.read(target.path)
            guard let current = store.document else { throw DeployError(.invalid, "\(target.path) does not exist; nothing to revert") }
            let wanted = to ?? current.previousGeneration
            let author = Author(actor: VersionsTarget.actor, command: "revert to \(wanted.map(String.init) ?? "?")")
            let (next, summary) = try current.reverting(to: to, by: author)
            _ = try target.validate(next)
            try target.write(next, over: store, summary: summary, options: write)
        }
    }
}

/// `switchyard history`: the generations of the versions file, newest first.
struct History: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the generations of the versions file: when, who, what changed, the weights.")

    @OptionGroup var options: ConfigOption

    @Option(help: "Read this versions file instead of the config's versions_file.")
    var versionsFile: String?

    func run() throws {
        try runWriting("history") {
            let target = try VersionsTarget(configPath: options.config, versionsFile: versionsFile)
            let store = try VersionsStore.read(target.path)
            guard let document = store.document else { throw DeployError(.invalid, "\(target.path) does not exist") }
            for line in document.historyLines { print(line) }
        }
    }
}
