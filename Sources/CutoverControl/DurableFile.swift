import Foundation
import Glibc

/// Replaces a file so that a crash leaves either the old or the new content, never a torn one:
/// write a temporary file beside it, fsync, rename over, fsync the directory.
public enum DurableFile {
    /// Why a durable write failed: the path involved and the system's reason.
    public struct Failure: Error, CustomStringConvertible {
        public let path: String
        public let reason: String
        public var description: String { "\(path): \(reason)" }
    }

    /// Writes `bytes` to `path` with permission bits `mode` (applied to the new file).
    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t = 0o644) throws(Failure) {
        let temporary = "\(path).tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw Failure(path: temporary, reason: lastError()) }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            written += n
        }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == bytes.count, synced else {
            let reason = lastError()
            unlink(temporary)
            throw Failure(path: temporary, reason: "write or fsync failed: \(reason)")
        }
        guard rename(temporary, path) == 0 else {
            let reason = lastError()
            unlink(temporary)
            throw Failure(path: path, reason: "rename failed: \(reason)")
        }
        try syncDirectory(of: path)
    }

    /// Removes `path` durably; a missing file is not an error.
    public static func remove(_ path: String) throws(Failure) {
        if unlink(path) != 0 && errno != ENOENT { throw Failure(path: path, reason: lastError()) }
        try syncDirectory(of: path)
    }

    /// Makes a rename or unlink in the directory of `path` itself durable.
    private static func syncDirectory(of path: String) throws(Failure) {
        let directory = (path as NSString).deletingLastPathComponent
        let fd = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(path: directory, reason: lastError()) }
        defer { close(fd) }
        if fsync(fd) != 0 { throw Failure(path: directory, reason: "fsync of the directory failed: \(lastError())") }
    }

    private static func lastError() -> String { String(cString: strerror(errno)) }
}
