import CutoverCore
import CutoverControl
import Foundation
import Synchronization

/// The long-running agent's command handling: one line in, one `OK …` / `ERR <code>: <message>` line out.
///
/// Commands: `db readonly on|off|status DSN-OR-NAME [--grace D] [--lease D] [--control-db NAME]`,
/// `lease renew NAME D`, `lease release NAME`, `lease show`, `flag on|off|status --driver …`, `help`. A read-only mode taken with `--lease` is given back
/// (`off`) by `expireLeases(now:)` when the lease runs out without renewal. Thread-safe: commands are
/// serialized by a mutex (libpq calls block; never call this on a proxy connection queue).
public final class AgentService: Sendable {
    /// One read-only mode held under a lease.
    struct Lease: Sendable {
        var fence: ReadOnlyFence
        var expires: ContinuousClock.Instant
        var duration: Duration
        /// The database as the command named it (a configured name or a connection string) and the
        /// control database: what a restarted agent needs to give the database back.
        var source: String
        var controlDatabase: String
        /// After a failed give-back: not retried before this (the lease stays, in memory and on disk).
        var retryAfter: ContinuousClock.Instant?
    }

    private let journal: Journal
    /// Configured databases by name (`databases` in the config); DSNs are accepted as well.
    private let databases: [String: String]
    private let log: @Sendable (String) -> Void
    private let leases = Mutex<[String: Lease]>([:])
    /// Serializes commands; `true` once `finish()` ran, so that later commands are refused.
    private let commandLock = Mutex(false)
    /// How long a failed give-back waits before the next try (each try is journaled and logged).
    private let retryDelay: Duration

    /// Leases survive a restart of the agent here (beside the journal, mode 0600): a database
    /// fenced under a lease must never stay read-only because the agent that held it went away.
    private var leaseFile: String { journal.path + ".leases" }

    /// Starts the service; leases saved by an earlier run are re-armed (and given back at once when
    /// they expired while the agent was down).
    public init(
        journal: Journal, databases: [String: String] = [:], now: ContinuousClock.Instant = .now, retryDelay: Duration = .seconds(10),
        log: @escaping @Sendable (String) -> Void
    ) {
        self.journal = journal
        self.databases = databases
        self.log = log
        self.retryDelay = retryDelay
        restoreLeases(now: now)
    }

    /// The commands, one per line, for `help` (text and JSON).
    static let commands = [
        "db readonly on|off|status DSN-OR-NAME [--grace D] [--lease D] [--control-db NAME]",
        "lease renew NAME D",
        "lease release NAME",
        "lease show",
        "flag on|off|status --driver file|sql|proxy OPTIONS",
        "help",
        "Append --json to any command for a JSON answer.",
    ]

    /// Handles one command line; never throws: failures are `ERR` answers.
    ///
    /// `--json` anywhere on the line (as `cutover ctl --json` appends it) asks for the proxy's JSON
    /// envelope: `{"ok":true,"message":…,…the command's fields}` or `{"ok":false,"code":…,"message":…}`.
    public func handle(_ line: String, now: ContinuousClock.Instant = .now) -> String {
        var words = CommandWords.split(line)
        let json = words.contains("--json")
        words.removeAll { $0 == "--json" }
        return commandLock.withLock { finished in
            do {
                guard !finished else { throw AgentCommandError(code: "shutting-down", message: "the agent is stopping; no new commands") }
                let reply = try run(words, now: now)
                return json ? reply.json : reply.text
            } catch {
                let (code, message) = Self.refusal(error)
                return json ? JSONCoding.line(AdminAnswer<NoAnswerData>(code: code, message: message)) : "ERR \(code): \(message)"
            }
        }
    }

    /// Waits for the command in progress to finish, then refuses every later one (`shutting-down`).
    public func finish() {
        commandLock.withLock { $0 = true }
    }

    private static func refusal(_ error: any Error) -> (code: String, message: String) {
        switch error {
        case let error as DatabaseError: return (error.code, oneLine(error.description))
        case let error as AgentCommandError: return (error.code, error.message)
        case let error as FlagError: return (error.code, oneLine(error.description))
        default: return ("failed", oneLine("\(error)"))
        }
    }

    /// Gives back every lease that expired by `now`; returns the names given back. Called by a timer.
    ///
    /// Give back first, then forget: a lease leaves the lease file only after `off` succeeded, so an
    /// agent that crashes in between, or an `off` that fails (database unreachable), leaves the lease
    /// on disk and the next start (or the next try, after `retryDelay`) gives the database back.
    @discardableResult
    public func expireLeases(now: ContinuousClock.Instant = .now) -> [String] {
        commandLock.withLock { finished in
            guard !finished else { return [] }
            let due = leases.withLock { held in
                held.filter { $0.value.expires <= now && ($0.value.retryAfter ?? now) <= now }.sorted { $0.key < $1.key }
            }
            var givenBack: [String] = []
            for (name, lease) in due {
                log("lease for \(name) expired without renewal (lease \(DurationText.format(lease.duration))): giving \"\(lease.fence.database)\" back read-write")
                do {
                    let report = try journal.record(
                        action: "db readonly off (lease expired)", target: lease.fence.target.description,
                        undo: ShellWords.command(["cutover", "db", "readonly", "on", "--dsn", lease.fence.target.description]),
                        describe: { (r: FenceReport) in r.json }
                    ) { try lease.fence.off() }
                    log(report.text)
                    leases.withLock { _ = $0.removeValue(forKey: name) }
                    saveLeases(now: now)
                    givenBack.append(name)
                } catch {
                    leases.withLock { $0[name]?.retryAfter = now + retryDelay }
                    log("could not give \(name) back read-write after its lease expired (the lease is kept; next try in \(DurationText.format(retryDelay))): \(Self.oneLine("\(error)"))")
                }
            }
            return givenBack
        }
    }

    private func run(_ words: [String], now: ContinuousClock.Instant) throws -> AgentReply {
        switch words.first {
        case "help"?, nil:
            return AgentReply(text: "OK commands: " + Self.commands.dropLast(2).joined(separator: "; "), data: HelpAnswer(commands: Self.commands))
        case "db"?:
            return try database(Array(words.dropFirst()), now: now)
        case "lease"?:
            return try lease(Array(words.dropFirst()), now: now)
        case "flag"?:
            return try flag(Array(words.dropFirst()))
        case let other?:
            throw AgentCommandError(code: "unknown-command", message: "unknown command '\(other)'")
        }
    }

    private func database(_ words: [String], now: ContinuousClock.Instant) throws -> AgentReply {
        guard words.count >= 3, words[0] == "readonly", ["on", "off", "status"].contains(words[1]) else {
            throw AgentCommandError(code: "usage", message: "db readonly on|off|status DSN-OR-NAME [--grace D] [--lease D]")
        }
        let action = words[1]
        let name = words[2]
        var options: [String: String] = [:]
        var index = 3
        while index < words.count {
            let key = words[index]
            guard ["--grace", "--lease", "--control-db"].contains(key), index + 1 < words.count else {
                throw AgentCommandError(code: "usage", message: "unexpected '\(key)'")
            }
            options[key] = words[index + 1]
            index += 2
        }
        func duration(_ key: String) throws -> Duration? {
            guard let text = options[key] else { return nil }
            guard let value = DurationText.parse(text) else { throw AgentCommandError(code: "usage", message: "\(key): '\(text)' is not a duration") }
            return value
        }
        let controlDatabase = options["--control-db"] ?? "postgres"
        let (fence, leaseName) = try makeFence(name, controlDatabase: controlDatabase)
        // The undo runs as it stands, from any shell, whether or not this agent still runs.
        func fenceCommand(_ mode: String) -> String {
            ShellWords.command(["cutover", "db", "readonly", mode, "--dsn", fence.target.description]
                + (controlDatabase == "postgres" ? [] : ["--control-db", controlDatabase]))
        }
        switch action {
        case "status":
            let status = try fence.status()
            let leaseLeft = leases.withLock({ $0[leaseName] }).map { ($0.expires - now).milliseconds }
            return AgentReply(
                text: "OK " + status.json + (leaseLeft.map { " lease=\($0)ms" } ?? ""),
                message: "database \"\(status.database)\": \(status.mode)", data: DatabaseStatusAnswer(status: status, leaseMs: leaseLeft))
        case "on":
            let grace = try duration("--grace") ?? .seconds(2)
            let leaseDuration = try duration("--lease")
            let report = try journal.record(
                action: "db readonly on" + (leaseDuration.map { " --lease \(DurationText.format($0))" } ?? ""),
                target: fence.target.description, undo: fenceCommand("off"), describe: { (r: FenceReport) in r.json }
            ) { try fence.on(grace: grace) }
            if let leaseDuration {
                leases.withLock {
                    $0[leaseName] = Lease(fence: fence, expires: now + leaseDuration, duration: leaseDuration, source: name, controlDatabase: controlDatabase)
                }
                saveLeases(now: now)
            }
            return AgentReply(fence: report)
        default:
            let report = try journal.record(
                action: "db readonly off", target: fence.target.description, undo: fenceCommand("on"), describe: { (r: FenceReport) in r.json }
            ) { try fence.off() }
            // Given back, now forgotten: a failed `off` keeps the lease, so expiry still retries it.
            if leases.withLock({ $0.removeValue(forKey: leaseName) }) != nil { saveLeases(now: now) }
            return AgentReply(fence: report)
        }
    }

    /// `flag on|off|status --driver … OPTIONS`: the words of `cutover flag`, journaled like every change.
    private func flag(_ words: [String]) throws -> AgentReply {
        guard let action = words.first, ["on", "off", "status"].contains(action) else {
            throw AgentCommandError(code: "usage", message: "flag on|off|status --driver file|sql|proxy OPTIONS")
        }
        var options: [String: String] = [:]
        var index = 1
        while index < words.count {
            guard FlagDriverOptions.names.contains(words[index]), index + 1 < words.count else {
                throw AgentCommandError(code: "usage", message: "unexpected '\(words[index])'")
            }
            options[words[index]] = words[index + 1]
            index += 2
        }
        let driver: FlagDriver
        do {
            driver = try FlagDriverOptions.make(action: action) { options[$0] }
        } catch {
            throw AgentCommandError(code: "usage", message: "\(error)")
        }
        let describe = { (result: FlagResult) in result.json }
        switch action {
        case "on":
            return AgentReply(flag: try journal.record(action: "flag on", target: driver.target, undo: ShellWords.flagCommand("off", options: options), describe: describe) { try driver.on() })
        case "off":
            return AgentReply(flag: try journal.record(action: "flag off", target: driver.target, undo: ShellWords.flagCommand("on", options: options), describe: describe) { try driver.off() })
        default:
            return AgentReply(flag: try driver.status())
        }
    }

    private func lease(_ words: [String], now: ContinuousClock.Instant) throws -> AgentReply {
        switch (words.first, words.count) {
        case ("show"?, 1):
            let held = leases.withLock { $0 }.sorted { $0.key < $1.key }.map { LeaseStatus(name: $0.key, leftMs: max(0, ($0.value.expires - now).milliseconds)) }
            return AgentReply(
                text: "OK " + (held.isEmpty ? "no leases" : held.map { "\($0.name)=\($0.leftMs)ms" }.joined(separator: " ")),
                data: LeasesAnswer(leases: held))
        case ("renew"?, 3):
            guard let duration = DurationText.parse(words[2]) else {
                throw AgentCommandError(code: "usage", message: "'\(words[2])' is not a duration")
            }
            let name = try heldLeaseName(words[1])
            leases.withLock { held in
                held[name]?.expires = now + duration
                held[name]?.duration = duration
                held[name]?.retryAfter = nil
            }
            saveLeases(now: now)
            let message = "lease \(name) renewed for \(DurationText.format(duration))"
            return AgentReply(text: "OK " + message, message: message, data: LeaseStatus(name: name, leftMs: duration.milliseconds))
        case ("release"?, 2):
            // The holder hands the fence over to a person: the database stays as it is, and no
            // expiry will give it back read-write behind anyone's back.
            let name = try heldLeaseName(words[1])
            leases.withLock { _ = $0.removeValue(forKey: name) }
            saveLeases(now: now)
            let message = "lease \(name) released; the database stays as it is"
            return AgentReply(text: "OK " + message, message: message, data: LeaseStatus(name: name, leftMs: 0))
        default:
            throw AgentCommandError(code: "usage", message: "lease renew NAME D | lease release NAME | lease show")
        }
    }

    /// The lease held under `word`: a lease name as `lease show` lists it, or the database name or
    /// connection string its `db readonly on` was given (so a holder needs to know only what it sent).
    private func heldLeaseName(_ word: String) throws -> String {
        if leases.withLock({ $0[word] }) != nil { return word }
        if let (_, name) = try? makeFence(word, controlDatabase: "postgres"), leases.withLock({ $0[name] }) != nil { return name }
        throw AgentCommandError(code: "no-lease", message: "no lease named '\(word)'")
    }

    /// The fence for a configured database name or a connection string, and the name its lease is kept under.
    private func makeFence(_ name: String, controlDatabase: String) throws -> (ReadOnlyFence, leaseName: String) {
        let dsn = databases[name] ?? name
        guard dsn.contains("=") || dsn.contains("://") else {
            throw AgentCommandError(code: "unknown-database", message: "no configured database named '\(name)'")
        }
        let fence = try ReadOnlyFence(target: ConnectionString(dsn), controlDatabase: controlDatabase)
        return (fence, databases[name] != nil ? name : fence.database)
    }

    /// Writes the leases held now, with wall-clock expiry times (the monotonic clock does not
    /// survive a restart). A failure is logged: the lease still holds in memory.
    private func saveLeases(now: ContinuousClock.Instant) {
        let wallNow = Date().timeIntervalSince1970
        let records = leases.withLock { held in
            held.sorted { $0.key < $1.key }.map { name, lease in
                LeaseRecord(
                    name: name, source: lease.source, controlDatabase: lease.controlDatabase,
                    expiresAt: wallNow + (lease.expires - now).seconds, durationMs: lease.duration.milliseconds)
            }
        }
        do {
            try DurableFile.write(Array(try JSONCoding.encoder.encode(records)), to: leaseFile, mode: 0o600)
        } catch {
            log("could not save the leases to \(leaseFile): \(error)")
        }
    }

    private func restoreLeases(now: ContinuousClock.Instant) {
        guard let data = FileManager.default.contents(atPath: leaseFile) else { return }
        let records: [LeaseRecord]
        do {
            records = try JSONCoding.decoder.decode([LeaseRecord].self, from: data)
        } catch {
            log("ignoring \(leaseFile): not a lease file (\(error))")
            return
        }
        let wallNow = Date().timeIntervalSince1970
        for record in records {
            do {
                let (fence, leaseName) = try makeFence(record.source, controlDatabase: record.controlDatabase)
                let left = Duration.milliseconds(Int64(((record.expiresAt - wallNow) * 1000).rounded()))
                leases.withLock {
                    $0[leaseName] = Lease(
                        fence: fence, expires: now + left, duration: .milliseconds(record.durationMs), source: record.source,
                        controlDatabase: record.controlDatabase)
                }
                log("re-armed the lease on \(leaseName) from \(leaseFile): \(left > .zero ? "\(DurationText.format(left)) left" : "expired while the agent was down")")
            } catch {
                log("cannot re-arm the lease on \(record.source) from \(leaseFile): \(error)")
            }
        }
    }

    static func oneLine(_ text: String) -> String {
        text.split(whereSeparator: \.isNewline).joined(separator: " ")
    }
}

/// A refused agent command: `ERR <code>: <message>`.
struct AgentCommandError: Error {
    let code: String
    let message: String
}

/// Splits a command line into words; single or double quotes keep spaces (`'host=a dbname=b'`).
public enum CommandWords {
    public static func split(_ line: String) -> [String] {
        var words: [String] = []
        var current = ""
        var quote: Character?
        var inWord = false
        for c in line {
            if let q = quote {
                if c == q { quote = nil } else { current.append(c) }
            } else if c == "'" || c == "\"" {
                quote = c
                inWord = true
            } else if c.isWhitespace {
                if inWord { words.append(current) }
                current = ""
                inWord = false
            } else {
                current.append(c)
                inWord = true
            }
        }
        if inWord { words.append(current) }
        return words
    }
}
