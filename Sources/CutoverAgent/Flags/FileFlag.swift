import CutoverControl
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
        do {
            try DurableFile.write(Array(content.utf8), to: path)
        } catch {
            throw .file(path: error.path, message: error.reason)
        }
        return FlagResult(driver: kind, target: target, action: "on", state: "on", detail: "")
    }

    public func off() throws(FlagError) -> FlagResult {
        do {
            try DurableFile.remove(path)
        } catch {
            throw .file(path: error.path, message: error.reason)
        }
        return FlagResult(driver: kind, target: target, action: "off", state: "off", detail: "")
    }

    public func status() throws(FlagError) -> FlagResult {
        let present = access(path, F_OK) == 0
        return FlagResult(driver: kind, target: target, action: "status", state: present ? "on" : "off", detail: present ? "file exists" : "no file")
    }
}
