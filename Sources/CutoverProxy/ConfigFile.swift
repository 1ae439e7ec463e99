import CutoverCore
import Glibc

/// Reads a config file and the maintenance page files it names, and hands their bytes to
/// `ConfigLoader`, which decodes and validates them (the core reads no file).
public enum ConfigFile {
    /// Reads, decodes and validates the config at `path`, for `use` (an agent's may hold only databases).
    ///
    /// Errors name the file as `path` was given. Relative `page_file` paths are resolved against
    /// the directory of `path`.
    public static func load(path: String, use: ConfigUse = .proxy) throws(ConfigError) -> Config {
        let bytes: [UInt8]
        switch read(path) {
        case .read(let contents): bytes = contents
        case .unreadable(let reason): throw ConfigError(file: path, key: "", reason: "cannot read: \(reason)")
        }
        let draft = try ConfigLoader.decode(bytes, file: path, use: use)
        var pages: [String: PageFileContents] = [:]
        for page in draft.pageFiles { pages[page] = read(page) }
        return try draft.completed(pageFiles: pages)
    }

    /// Reads a whole file; a failure carries the operating system's reason (`No such file or directory`).
    static func read(_ path: String) -> PageFileContents {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .unreadable(reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var contents: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return .unreadable(reason: String(cString: strerror(errno)))
            }
            if count == 0 { return .read(contents) }
            contents.append(contentsOf: buffer[0..<count])
            // Configs are small; anything bigger is a wrong path (a log, a database file).
            if contents.count > ConfigLoader.maxFileBytes {
                return .unreadable(reason: "file is larger than \(ConfigLoader.maxFileBytes >> 20) MiB")
            }
        }
    }
}
