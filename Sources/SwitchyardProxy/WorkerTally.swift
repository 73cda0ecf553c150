/// What a worker counts on the request path, in plain fields of its own (no atomics, no
/// locks), and the copy-out to its `WorkerStats` on the tick.
struct WorkerTally {
    /// Finished exchanges and refused connections.
    var counters = ExchangeCounters()
    /// Per version name, kept across reloads (`WorkerRoutes.stats` holds the current versions'
    /// cells); the first one counts exchanges that never chose a version.
    private var cells = [VersionStatsCell(name: "")]
    /// Finished exchanges plus refused connections and GOAWAYs at the last copy.
    private var publishedActivity: UInt64 = 0
    private var publishedCells = 0

    /// The cell of exchanges that never chose a version (rejected before routing).
    var unrouted: VersionStatsCell { cells[0] }

    /// The cell of a version name, made on first sight (at a reload, not per request).
    mutating func cell(for name: String) -> VersionStatsCell {
        if let cell = cells.first(where: { $0.name == name && !$0.name.isEmpty }) { return cell }
        let cell = VersionStatsCell(name: name)
        cells.append(cell)
        return cell
    }

    /// Copies the counters and cells out for `/status` and `/metrics` when an exchange
    /// finished, a connection was refused or a GOAWAY went out since the last copy, or a
    /// version was added: an idle worker copies nothing. `failures` is asked only then.
    mutating func publish(to stats: WorkerStats, failures: () -> [EndpointFailures]) {
        let activity = counters.finished &+ counters.refusedConnections &+ counters.http2GoAways.total
        guard activity != publishedActivity || cells.count != publishedCells else { return }
        publishedActivity = activity
        publishedCells = cells.count
        stats.counters.store(counters)
        stats.versions.store(cells.map { NamedVersionStats(name: $0.name, stats: $0.stats) })
        stats.connectFailures.store(failures())
    }
}
