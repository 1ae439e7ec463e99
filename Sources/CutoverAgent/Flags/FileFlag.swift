import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A flag that is a file: present means on. Created atomically (temp file, fsync, rename, fsync dir).
public struct FileFlag: FlagDriver {
    public let path: String
    /// Written into the file when it is created.
    public var content: String

    public init(path: String, content: String = "maintenance\n") {
        self.path = path
        self.content = content
    }

    public var kind: String { "file" }
    public var target: String { "file \(path)" }

    public func on() throws(FlagError) -> FlagResult {
        let temp = "\(path).tmp-\(getpid())"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .file(path: temp, message: Self.lastError()) }
        let bytes = Array(content.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == bytes.count, synced else {
            unlink(temp)
            throw .file(path: temp, message: "write or fsync failed: \(Self.lastError())")
        }
        guard rename(temp, path) == 0 else {
            let message = Self.lastError()
            unlink(temp)
            throw .file(path: path, message: "rename failed: \(message)")
        }
        try syncDirectory()
        return FlagResult(driver: kind, target: target, action: "on", state: "on", detail: "")
    }

    public func off() throws(FlagError) -> FlagResult {
        if unlink(path) != 0 && errno != ENOENT { throw .file(path: path, message: Self.lastError()) }
        try syncDirectory()
        return FlagResult(driver: kind, target: target, action: "off", state: "off", detail: "")
    }

    public func status() throws(FlagError) -> FlagResult {
        let present = access(path, F_OK) == 0
        return FlagResult(driver: kind, target: target, action: "status", state: present ? "on" : "off", detail: present ? "file exists" : "no file")
    }

    /// Makes the rename or unlink itself durable.
    private func syncDirectory() throws(FlagError) {
        let directory = (path as NSString).deletingLastPathComponent
        let fd = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .file(path: directory, message: Self.lastError()) }
        defer { close(fd) }
        if fsync(fd) != 0 { throw .file(path: directory, message: "fsync of the directory failed: \(Self.lastError())") }
    }

    static func lastError() -> String { String(cString: strerror(errno)) }
}
