import CutoverCore
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A journal directory: `lock` (one run at a time), `journal.jsonl` (the current run, one fsync'd
/// JSON line per `RunJournalEntry`) and `runs/` (earlier runs, moved there when a new one starts).
public struct RunJournalDirectory: Sendable {
    /// The default, documented in `cutover upgrade --help` and docs/runbooks.md.
    public static let defaultPath = "/var/lib/cutover/upgrade"

    /// The directory.
    public let path: String
    /// The current run's journal.
    public var journalPath: String { path + "/journal.jsonl" }
    /// The file `flock`ed by the process acting on the directory.
    public var lockPath: String { path + "/lock" }

    public init(path: String) { self.path = path }

    /// Entries of the current run, oldest first; `nil` when there is none. A torn last line (the
    /// runner died inside a write) is ignored; a bad line elsewhere is an error.
    public func entries() throws(RunbookRunError) -> [RunJournalEntry]? {
        guard FileManager.default.fileExists(atPath: journalPath) else { return nil }
        guard let data = FileManager.default.contents(atPath: journalPath) else {
            throw .journal(path: journalPath, message: "cannot read it")
        }
        let lines = data.split(separator: UInt8(ascii: "\n"))
        var entries: [RunJournalEntry] = []
        for (n, line) in lines.enumerated() {
            do {
                entries.append(try Self.decoder.decode(RunJournalEntry.self, from: Data(line)))
            } catch {
                // A torn line (cut short by a kill inside a write) is not a complete JSON object.
                if n == lines.count - 1 && data.last != UInt8(ascii: "\n") { break }
                if line.last != UInt8(ascii: "}") { continue }
                throw .journal(path: journalPath, message: "line \(n + 1) is not a journal entry: \(error)")
            }
        }
        return entries
    }

    /// Appends and fsyncs one entry; it is on disk when this returns.
    public func append(_ entry: RunJournalEntry) throws(RunbookRunError) {
        guard let data = try? Self.encoder.encode(entry) else { throw .journal(path: journalPath, message: "cannot encode \(entry.event.rawValue)") }
        let isNew = !FileManager.default.fileExists(atPath: journalPath)
        // After a torn last line (a runner killed inside a write) start on a line of our own, so
        // the torn one stays the only unreadable line and is skipped.
        let prefix: [UInt8] = !isNew && lastByte() != UInt8(ascii: "\n") ? [UInt8(ascii: "\n")] : []
        if let failure = Journal.appendDurably(prefix + Array(data) + [UInt8(ascii: "\n")], to: journalPath) {
            throw .journal(path: journalPath, message: failure)
        }
        // A new file's directory entry must be durable too, or a crash could lose the whole journal.
        if isNew { syncDirectory() }
    }

    private func lastByte() -> UInt8? {
        let fd = open(journalPath, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let size = lseek(fd, 0, SEEK_END)
        guard size > 0 else { return UInt8(ascii: "\n") }
        var byte: UInt8 = 0
        return pread(fd, &byte, 1, size - 1) == 1 ? byte : nil
    }

    /// Moves the finished run's journal to `runs/RUN_ID.jsonl`, so the next run starts a fresh file.
    public func archive(runId: String) throws(RunbookRunError) {
        let runs = path + "/runs"
        do {
            try FileManager.default.createDirectory(atPath: runs, withIntermediateDirectories: true)
            try FileManager.default.moveItem(atPath: journalPath, toPath: "\(runs)/\(runId.isEmpty ? "run" : runId)-\(Int(Date().timeIntervalSince1970)).jsonl")
        } catch {
            throw .journal(path: journalPath, message: "cannot archive the finished run: \(error)")
        }
        syncDirectory()
    }

    /// Whether some process holds the lock now (a live runner, rollback or resume).
    public func isLockHeld() -> Bool {
        let fd = open(lockPath, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        if flock(fd, LOCK_EX | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return false
        }
        return errno == EWOULDBLOCK
    }

    /// Takes the directory's lock for this process (released when the process ends, even by kill -9).
    public func lock() throws(RunbookRunError) -> RunLock {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw .journal(path: path, message: "cannot create the journal directory: \(error)")
        }
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .journal(path: lockPath, message: String(cString: strerror(errno))) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let holder = (try? String(contentsOfFile: lockPath, encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            close(fd)
            throw .locked(directory: path, holder: holder)
        }
        // The holder's pid, for the refusal message of the next one.
        let text = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        return RunLock(fd: fd)
    }

    private func syncDirectory() {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }

    static var encoder: JSONEncoder { JSONCoding.encoder }
    static var decoder: JSONDecoder { JSONCoding.decoder }
}

/// The held lock of a journal directory; `release` (or the process ending) frees it.
public final class RunLock: @unchecked Sendable {
    // Only the thread that runs the command touches `fd`.
    private var fd: Int32

    init(fd: Int32) { self.fd = fd }

    /// Frees the lock now.
    public func release() {
        guard fd >= 0 else { return }
        flock(fd, LOCK_UN)
        close(fd)
        fd = -1
    }

    deinit { release() }
}
