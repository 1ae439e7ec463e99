#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads, decodes and validates the JSON config file into a `Config`.
///
/// The only file I/O in the core: the config itself and a profile's `maintenance.page_file`.
/// Every refusal is a `ConfigError` naming the file, the key path and the reason.
public enum ConfigLoader {
    /// Configs are small; anything bigger is a wrong path (a log, a database file), not a config.
    static let maxFileBytes = 16 << 20

    /// Reads the file at `path` and returns the validated config.
    ///
    /// Errors name the file as `path` was given. Relative `page_file` paths are resolved against
    /// the directory of `path`.
    public static func load(path: String) throws(ConfigError) -> Config {
        let bytes: [UInt8]
        switch readFile(path) {
        case .success(let read): bytes = read
        case .failure(let failure): throw ConfigError(file: path, key: "", reason: "cannot read: \(failure.reason)")
        }
        return try parse(bytes, file: path)
    }

    /// Decodes and validates a config from the bytes of a JSON document.
    ///
    /// `file` names the document in errors, and its directory anchors relative `page_file` paths.
    public static func parse(_ bytes: [UInt8], file: String) throws(ConfigError) -> Config {
        let document: JSONValue
        do {
            document = try JSONValue.parse(bytes)
        } catch {
            throw ConfigError(file: file, key: "", reason: "invalid JSON at \(error)")
        }
        let decoder = ConfigDecoder(file: file, baseDirectory: directory(of: file))
        let config = try decoder.decodeConfig(document)
        try validate(config, file: file)
        return config
    }

    /// Decodes and validates a config from a JSON string; convenient for tests and flag-built JSON.
    public static func parse(_ text: String, file: String) throws(ConfigError) -> Config {
        try parse(Array(text.utf8), file: file)
    }

    /// The directory part of `path` (`"."` when it has none), for resolving relative paths.
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let dir = path[..<slash]
        return dir.isEmpty ? "/" : String(dir)
    }

    /// Reads a whole file; the failure is the operating system's reason (`No such file or directory`).
    static func readFile(_ path: String) -> Result<[UInt8], FileReadFailure> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(systemReason(errno)) }
        defer { close(fd) }
        var contents: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return .failure(systemReason(errno))
            }
            if count == 0 { return .success(contents) }
            contents.append(contentsOf: buffer[0..<count])
            if contents.count > maxFileBytes { return .failure(FileReadFailure(reason: "file is larger than \(maxFileBytes >> 20) MiB")) }
        }
    }

    private static func systemReason(_ code: Int32) -> FileReadFailure {
        FileReadFailure(reason: String(cString: strerror(code)))
    }
}

/// Why a file could not be read, as the operating system put it.
struct FileReadFailure: Error {
    let reason: String
}
