import CutoverCore
import Foundation
import Glibc

/// What start needs from the machine, short of binding: endpoint names that resolve, a socket group
/// that exists, a state file that reads, and directories the proxy may create its files in.
///
/// `proxy --check` and start run the same function, so a config `--check` accepts does not then
/// fail at start (issue 17, defect 3), and a start that will fail does so before "listening on".
public enum StartChecks {
    /// Runs every check; the first failure is a `ConfigError` naming the key it is about.
    ///
    /// - Important: may block on DNS.
    public static func verify(_ config: Config, file: String) throws(ConfigError) {
        func fail(_ key: String, _ reason: String) -> ConfigError { ConfigError(file: file, key: key, reason: reason) }
        for (p, profile) in config.profiles.enumerated() {
            for (e, endpoint) in profile.endpoints.enumerated() {
                do {
                    _ = try Socket.resolve(endpoint.address)
                } catch {
                    throw fail("profiles[\(p)].endpoints[\(e)].address", "\(error)")
                }
            }
        }
        if let group = config.admin.socketGroup, getgrnam(group) == nil {
            throw fail("admin.socket_group", "no group named \"\(group)\" on this machine")
        }
        if let socket = config.admin.socket, let reason = unwritableDirectory(of: socket) {
            throw fail("admin.socket", reason)
        }
        if let stateFile = config.stateFile {
            if let reason = unwritableDirectory(of: stateFile) { throw fail("state_file", reason) }
            do {
                _ = try StateFile(path: stateFile).read()
            } catch {
                throw fail("state_file", "\(error)")
            }
        }
        if config.accessLog != "stderr", config.accessLog != "off" {
            if FileManager.default.fileExists(atPath: config.accessLog) {
                guard access(config.accessLog, W_OK) == 0 else { throw fail("access_log", "\(config.accessLog) is not writable by this user") }
            } else if let reason = unwritableDirectory(of: config.accessLog) {
                throw fail("access_log", reason)
            }
        }
    }

    /// Creates the directories of the admin socket and the state file that do not exist yet, and
    /// logs each one with its owner and mode: a directory made as root should not appear unnoticed.
    public static func prepareDirectories(_ config: Config) {
        let files = [(config.admin.socket, "the admin socket"), (config.stateFile, "the state file")]
        for case (let path?, let purpose) in files {
            let directory = (path as NSString).deletingLastPathComponent
            guard !directory.isEmpty, !FileManager.default.fileExists(atPath: directory) else { continue }
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                Log.info("created directory \(directory) for \(purpose) (owner uid \(getuid()), mode \(modeText(of: directory)))")
            } catch {
                Log.warning("cannot create directory \(directory) for \(purpose): \(error)")
            }
        }
    }

    /// Why a file could not be created at `path`; `nil` when its directory exists and is writable,
    /// or does not exist but its nearest existing ancestor is (start will create it).
    static func unwritableDirectory(of path: String) -> String? {
        var directory = (path as NSString).deletingLastPathComponent
        if directory.isEmpty { directory = "." }
        var existing = directory
        while !FileManager.default.fileExists(atPath: existing) {
            let parent = (existing as NSString).deletingLastPathComponent
            if parent.isEmpty || parent == existing { break }
            existing = parent
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: existing, isDirectory: &isDirectory), isDirectory.boolValue else {
            return "\(existing) is not a directory"
        }
        guard access(existing, W_OK | X_OK) == 0 else {
            let missing = existing == directory ? "" : " (\(directory) does not exist and cannot be created there)"
            return "directory \(existing) is not writable by this user (uid \(getuid()))\(missing)"
        }
        return nil
    }

    private static func modeText(of path: String) -> String {
        var info = stat()
        guard stat(path, &info) == 0 else { return "?" }
        return "0" + String(info.st_mode & 0o7777, radix: 8)
    }
}
