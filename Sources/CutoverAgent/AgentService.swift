import CutoverCore
import Foundation
import Synchronization

/// The long-running agent's command handling: one line in, one `OK …` / `ERR <code>: <message>` line out.
///
/// Commands: `db readonly on|off|status DSN-OR-NAME [--grace D] [--lease D] [--control-db NAME]`,
/// `lease renew NAME D`, `lease show`, `help`. A read-only mode taken with `--lease` is given back
/// (`off`) by `expireLeases(now:)` when the lease runs out without renewal. Thread-safe: commands are
/// serialized by a mutex (libpq calls block; never call this on a proxy connection queue).
public final class AgentService: Sendable {
    /// One read-only mode held under a lease.
    struct Lease: Sendable {
        var fence: ReadOnlyFence
        var expires: ContinuousClock.Instant
        var duration: Duration
    }

    private let journal: Journal
    /// Configured databases by name (`databases` in the config); DSNs are accepted as well.
    private let databases: [String: String]
    private let log: @Sendable (String) -> Void
    private let leases = Mutex<[String: Lease]>([:])
    private let commandLock = Mutex(())

    public init(journal: Journal, databases: [String: String] = [:], log: @escaping @Sendable (String) -> Void) {
        self.journal = journal
        self.databases = databases
        self.log = log
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
            return "OK commands: db readonly on|off|status DSN-OR-NAME [--grace D] [--lease D] [--control-db NAME]; lease renew NAME D; lease show"
        case "db"?:
            return try database(Array(words.dropFirst()), now: now)
        case "lease"?:
            return try lease(Array(words.dropFirst()), now: now)
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
        let dsn = databases[name] ?? name
        guard dsn.contains("=") || dsn.contains("://") else {
            throw AgentCommandError(code: "unknown-database", message: "no configured database named '\(name)'")
        }
        let fence = try ReadOnlyFence(target: ConnectionString(dsn), controlDatabase: options["--control-db"] ?? "postgres")
        let leaseName = databases[name] != nil ? name : fence.database
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
                leases.withLock { $0[leaseName] = Lease(fence: fence, expires: now + leaseDuration, duration: leaseDuration) }
            }
            return "OK " + report.json
        default:
            leases.withLock { _ = $0.removeValue(forKey: leaseName) }
            let report = try journal.record(
                action: "db readonly off", target: fence.target.description, undo: "db readonly on", describe: { (r: FenceReport) in r.json }
            ) { try fence.off() }
            return "OK " + report.json
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
            return "OK lease \(words[1]) renewed for \(DurationText.format(duration))"
        default:
            throw AgentCommandError(code: "usage", message: "lease renew NAME DURATION | lease show")
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
