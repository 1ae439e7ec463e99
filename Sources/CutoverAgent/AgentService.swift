import CutoverCore
import CutoverControl
import Foundation
import Synchronization

/// The long-running agent's command handling: one line in, one `OK …` / `ERR <code>: <message>` line out.
///
/// Commands: `db readonly on|off|status DSN-OR-NAME [--grace D] [--lease D] [--control-db NAME]`,
/// `lease renew NAME D`, `lease show`, `flag on|off|status --driver …`, `help`. A read-only mode taken with `--lease` is given back
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
    }

    private let journal: Journal
    /// Configured databases by name (`databases` in the config); DSNs are accepted as well.
    private let databases: [String: String]
    private let log: @Sendable (String) -> Void
    private let leases = Mutex<[String: Lease]>([:])
    private let commandLock = Mutex(())

    /// Leases survive a restart of the agent here (beside the journal, mode 0600): a database
    /// fenced under a lease must never stay read-only because the agent that held it went away.
    private var leaseFile: String { journal.path + ".leases" }

    /// Starts the service; leases saved by an earlier run are re-armed (and given back at once when
    /// they expired while the agent was down).
    public init(journal: Journal, databases: [String: String] = [:], now: ContinuousClock.Instant = .now, log: @escaping @Sendable (String) -> Void) {
        self.journal = journal
        self.databases = databases
        self.log = log
        restoreLeases(now: now)
    }

    /// Handles one command line; never throws: failures are `ERR` answers.
    public func handle(_ line: String, now: ContinuousClock.Instant = .now) -> String {
        commandLock.withLock { _ in
            do {
                return try run(CommandWords.split(line), now: now)
            } catch let error as DatabaseError {
                return "ERR \(error.code): \(Self.oneLine(error.description))"
            } catch let error as AgentCommandError {
                return "ERR \(error.code): \(error.message)"
            } catch let error as FlagError {
                return "ERR \(error.code): \(Self.oneLine(error.description))"
            } catch {
                return "ERR failed: \(Self.oneLine("\(error)"))"
            }
        }
    }

    /// Gives back every lease that expired by `now`; returns the names released. Called by a timer.
    @discardableResult
    public func expireLeases(now: ContinuousClock.Instant = .now) -> [String] {
        let expired = leases.withLock { held in
            let names = held.filter { $0.value.expires <= now }.map(\.key).sorted()
            return names.compactMap { name in held.removeValue(forKey: name).map { (name, $0) } }
        }
        if !expired.isEmpty { saveLeases(now: now) }
        return commandLock.withLock { _ in
            expired.map { name, lease in
                log("lease for \(name) expired without renewal (lease \(DurationText.format(lease.duration))): giving \"\(lease.fence.database)\" back read-write")
                do {
                    let report = try journal.record(
                        action: "db readonly off (lease expired)", target: lease.fence.target.description, undo: "db readonly on",
                        describe: { (r: FenceReport) in r.json }
                    ) { try lease.fence.off() }
                    log(report.text)
                } catch {
                    log("could not give \(name) back read-write after its lease expired: \(error)")
                }
                return name
            }
        }
    }

    private func run(_ words: [String], now: ContinuousClock.Instant) throws -> String {
        switch words.first {
        case "help"?, nil:
            return "OK commands: db readonly on|off|status DSN-OR-NAME [--grace D] [--lease D] [--control-db NAME]; lease renew NAME D; lease show; flag on|off|status --driver file|sql|proxy OPTIONS"
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

    private func database(_ words: [String], now: ContinuousClock.Instant) throws -> String {
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
        switch action {
        case "status":
            var status = "OK " + (try fence.status().json)
            if let lease = leases.withLock({ $0[leaseName] }) {
                status += " lease=\((lease.expires - now).milliseconds)ms"
            }
            return status
        case "on":
            let grace = try duration("--grace") ?? .seconds(2)
            let leaseDuration = try duration("--lease")
            let report = try journal.record(
                action: "db readonly on" + (leaseDuration.map { " --lease \(DurationText.format($0))" } ?? ""),
                target: fence.target.description, undo: "db readonly off", describe: { (r: FenceReport) in r.json }
            ) { try fence.on(grace: grace) }
            if let leaseDuration {
                leases.withLock {
                    $0[leaseName] = Lease(fence: fence, expires: now + leaseDuration, duration: leaseDuration, source: name, controlDatabase: controlDatabase)
                }
                saveLeases(now: now)
            }
            return "OK " + report.json
        default:
            if leases.withLock({ $0.removeValue(forKey: leaseName) }) != nil { saveLeases(now: now) }
            let report = try journal.record(
                action: "db readonly off", target: fence.target.description, undo: "db readonly on", describe: { (r: FenceReport) in r.json }
            ) { try fence.off() }
            return "OK " + report.json
        }
    }

    /// `flag on|off|status --driver … OPTIONS`: the words of `cutover flag`, journaled like every change.
    private func flag(_ words: [String]) throws -> String {
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
            driver = try FlagDriverOptions.make { options[$0] }
        } catch {
            throw AgentCommandError(code: "usage", message: "\(error)")
        }
        let describe = { (result: FlagResult) in result.json }
        switch action {
        case "on":
            return "OK " + (try journal.record(action: "flag on", target: driver.target, undo: "flag off", describe: describe) { try driver.on() }).json
        case "off":
            return "OK " + (try journal.record(action: "flag off", target: driver.target, undo: "flag on", describe: describe) { try driver.off() }).json
        default:
            return "OK " + (try driver.status()).json
        }
    }

    private func lease(_ words: [String], now: ContinuousClock.Instant) throws -> String {
        switch (words.first, words.count) {
        case ("show"?, 1):
            let held = leases.withLock { $0 }.sorted { $0.key < $1.key }
            return "OK " + (held.isEmpty ? "no leases" : held.map { "\($0.key)=\(max(0, ($0.value.expires - now).milliseconds))ms" }.joined(separator: " "))
        case ("renew"?, 3):
            guard let duration = DurationText.parse(words[2]) else {
                throw AgentCommandError(code: "usage", message: "'\(words[2])' is not a duration")
            }
            let renewed = leases.withLock { held -> Bool in
                guard var lease = held[words[1]] else { return false }
                lease.expires = now + duration
                lease.duration = duration
                held[words[1]] = lease
                return true
            }
            guard renewed else { throw AgentCommandError(code: "no-lease", message: "no lease named '\(words[1])'") }
            saveLeases(now: now)
            return "OK lease \(words[1]) renewed for \(DurationText.format(duration))"
        default:
            throw AgentCommandError(code: "usage", message: "lease renew NAME DURATION | lease show")
        }
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
        let entries: [[String: Any]] = leases.withLock { held in
            held.sorted { $0.key < $1.key }.map { name, lease in
                [
                    "name": name, "source": lease.source, "control_database": lease.controlDatabase,
                    "expires_at": wallNow + (lease.expires - now).seconds, "duration_ms": lease.duration.milliseconds,
                ]
            }
        }
        do {
            let data = try JSONSerialization.data(withJSONObject: entries, options: [.sortedKeys])
            try DurableFile.write(Array(data), to: leaseFile, mode: 0o600)
        } catch {
            log("could not save the leases to \(leaseFile): \(error)")
        }
    }

    private func restoreLeases(now: ContinuousClock.Instant) {
        guard let data = FileManager.default.contents(atPath: leaseFile) else { return }
        guard let entries = (try? JSONSerialization.jsonObject(with: data)) as? [[String: Any]] else {
            log("ignoring \(leaseFile): not a lease file")
            return
        }
        let wallNow = Date().timeIntervalSince1970
        for entry in entries {
            guard let source = entry["source"] as? String, let control = entry["control_database"] as? String,
                  let expiresAt = entry["expires_at"] as? Double, let durationMS = entry["duration_ms"] as? Int else { continue }
            do {
                let (fence, leaseName) = try makeFence(source, controlDatabase: control)
                let left = Duration.milliseconds(Int64(((expiresAt - wallNow) * 1000).rounded()))
                leases.withLock {
                    $0[leaseName] = Lease(fence: fence, expires: now + left, duration: .milliseconds(durationMS), source: source, controlDatabase: control)
                }
                log("re-armed the lease on \(leaseName) from \(leaseFile): \(left > .zero ? "\(DurationText.format(left)) left" : "expired while the agent was down")")
            } catch {
                log("cannot re-arm the lease on \(source) from \(leaseFile): \(error)")
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
