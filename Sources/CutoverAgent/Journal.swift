import CutoverCore
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One line of the journal: written `before` a change (with its undo) and `after` it (with the result).
public struct JournalEntry: Codable, Sendable, Equatable {
    /// UTC, ISO 8601 with milliseconds.
    public var time: String
    /// Pairs a `before` with its `after`.
    public var id: String
    /// `before` or `after`.
    public var phase: String
    /// What is being done, as the command an operator would type: `db readonly on`.
    public var action: String
    /// What it is done to: a database (connection string without password) or a flag.
    public var target: String
    /// The command that undoes it (on `before`).
    public var undo: String?
    /// `ok` or `failed` (on `after`).
    public var result: String?
    /// The report or error, one line.
    public var detail: String?
}

/// Why the journal could not be written; the agent then refuses to act.
public struct JournalError: Error, Sendable, CustomStringConvertible {
    public let path: String
    public let message: String
    public var description: String { "cannot write the journal \(path): \(message); nothing was changed" }
}

/// An append-only JSON-lines file; every entry is fsync'd before the call returns.
///
/// Thread-safe: appends are serialized by a mutex, so the long-running agent may journal from any queue.
public final class Journal: Sendable {
    public let path: String
    private let lock = Mutex(())

    public init(path: String) { self.path = path }

    /// Appends one entry and fsyncs it.
    public func append(_ entry: JournalEntry) throws(JournalError) {
        guard let data = try? JSONCoding.encoder.encode(entry) else { throw JournalError(path: path, message: "cannot encode entry") }
        let line = Array(data) + [UInt8(ascii: "\n")]
        let failure: String? = lock.withLock { _ in Self.appendDurably(line, to: path) }
        if let failure { throw JournalError(path: path, message: failure) }
    }

    /// Appends `line` to the file at `path` (created 0600) and fsyncs it; returns why it failed, or `nil`.
    ///
    /// The one durable append of the agent: the flag/fence journal and the runbook run journal both
    /// rely on "returned means on disk", so a crash right after never loses the line.
    public static func appendDurably(_ line: [UInt8], to path: String) -> String? {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return String(cString: strerror(errno)) }
        defer { close(fd) }
        var written = 0
        while written < line.count {
            let n = line[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return String(cString: strerror(errno))
            }
            written += n
        }
        return fsync(fd) == 0 ? nil : String(cString: strerror(errno))
    }

    /// Journals `before`, runs `body`, journals `after` with its outcome, and returns or rethrows.
    ///
    /// `describe` turns the result into the `after` detail. The `before` entry is durable before the
    /// change starts; if it cannot be written, `body` does not run.
    public func record<T>(
        action: String, target: String, undo: String?, describe: (T) -> String, _ body: () throws -> T
    ) throws -> T {
        let id = Self.newID()
        try append(JournalEntry(time: Self.now(), id: id, phase: "before", action: action, target: target, undo: undo))
        do {
            let value = try body()
            try append(JournalEntry(time: Self.now(), id: id, phase: "after", action: action, target: target, result: "ok", detail: describe(value)))
            return value
        } catch {
            try? append(JournalEntry(time: Self.now(), id: id, phase: "after", action: action, target: target, result: "failed", detail: "\(error)"))
            throw error
        }
    }

    /// Every entry in the file, oldest first; unreadable lines are skipped.
    public func entries() -> [JournalEntry] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        let decoder = JSONCoding.decoder
        return text.split(separator: "\n").compactMap { try? decoder.decode(JournalEntry.self, from: Data($0.utf8)) }
    }

    static func now() -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: Date())
    }

    static func newID() -> String {
        String(UInt64.random(in: 0...UInt64.max), radix: 16)
    }
}

/// Runs a change through `journal` when there is one, directly otherwise (one-shot CLI without `--journal`).
public func journaled<T>(
    _ journal: Journal?, action: String, target: String, undo: String?, describe: (T) -> String, _ body: () throws -> T
) throws -> T {
    guard let journal else { return try body() }
    return try journal.record(action: action, target: target, undo: undo, describe: describe, body)
}
