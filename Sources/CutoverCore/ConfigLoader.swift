/// Decodes and validates the bytes of a JSON config into a `Config`.
///
/// The core reads no file: the edge (`ConfigFile` in CutoverProxy) reads the config and then the
/// `maintenance.page_file`s the decoded draft names, and hands their bytes back. Every refusal is a
/// `ConfigError` naming the file, the key path and the reason.
public enum ConfigLoader {
    /// Configs are small; anything bigger is a wrong path (a log, a database file), not a config.
    public static let maxFileBytes = 16 << 20

    /// Decodes and validates a config document; the page files it names are still to be read.
    ///
    /// `file` names the document in errors, and its directory anchors relative `page_file` paths.
    public static func decode(_ bytes: [UInt8], file: String, use: ConfigUse = .proxy) throws(ConfigError) -> ConfigDraft {
        let document: JSONValue
        do {
            document = try JSONValue.parse(bytes)
        } catch {
            throw ConfigError(file: file, key: "", reason: "invalid JSON at \(error)")
        }
        let decoder = ConfigDecoder(file: file, baseDirectory: directory(of: file), use: use)
        let config = try decoder.decodeConfig(document)
        try validate(config, file: file, use: use)
        return ConfigDraft(file: file, config: config)
    }

    /// Decodes and validates a config from the bytes of a JSON document and of the page files it names.
    ///
    /// `pageFiles` is keyed by the resolved path (`ConfigDraft.pageFiles`); a page file not given
    /// is refused like one that could not be read.
    public static func parse(_ bytes: [UInt8], file: String, pageFiles: [String: PageFileContents] = [:]) throws(ConfigError) -> Config {
        try decode(bytes, file: file).completed(pageFiles: pageFiles)
    }

    /// Decodes and validates a config from a JSON string; convenient for tests and flag-built JSON.
    public static func parse(_ text: String, file: String, pageFiles: [String: PageFileContents] = [:]) throws(ConfigError) -> Config {
        try parse(Array(text.utf8), file: file, pageFiles: pageFiles)
    }

    /// The directory part of `path` (`"."` when it has none), for resolving relative paths.
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let dir = path[..<slash]
        return dir.isEmpty ? "/" : String(dir)
    }
}

/// Who reads a config, which decides what it must contain.
public enum ConfigUse: Sendable, Equatable {
    /// `cutover proxy`: at least one listener and one profile.
    case proxy
    /// `cutover agent`, `db`, `flag`: only `databases` and the agent's own settings are needed, so
    /// database credentials need not live in the proxy's file; listeners and profiles, when
    /// present, are still checked.
    case agent
}

/// What the edge found at a page file's path: its bytes, or why it could not read them.
public enum PageFileContents: Sendable, Equatable {
    /// The whole file.
    case read([UInt8])
    /// The operating system's reason, e.g. `No such file or directory`.
    case unreadable(reason: String)
}

/// A decoded, validated config whose maintenance page files have not been read yet.
///
/// Reading is the edge's job: it reads every path in `pageFiles` and calls `completed(pageFiles:)`.
public struct ConfigDraft: Sendable {
    /// The config file as named in errors.
    public let file: String
    private let config: Config

    init(file: String, config: Config) {
        self.file = file
        self.config = config
    }

    /// Resolved paths of the page files the config names, in profile order, without repeats.
    public var pageFiles: [String] {
        var seen: Set<String> = []
        return config.profiles.compactMap(\.gate.maintenancePageFile).filter { seen.insert($0).inserted }
    }

    /// The config with each profile's page file text in place.
    ///
    /// Refuses, naming `profiles[i].maintenance.page_file`, a page that was not given, could not
    /// be read, or is not UTF-8 text.
    public func completed(pageFiles contents: [String: PageFileContents]) throws(ConfigError) -> Config {
        var config = self.config
        for (i, profile) in config.profiles.enumerated() {
            guard let path = profile.gate.maintenancePageFile else { continue }
            let key = "profiles[\(i)].maintenance.page_file"
            switch contents[path] {
            case .read(let bytes):
                guard let page = String(validating: bytes, as: UTF8.self) else {
                    throw ConfigError(file: file, key: key, reason: "\(path) is not UTF-8 text")
                }
                config.profiles[i].gate.maintenancePage = page
            case .unreadable(let reason):
                throw ConfigError(file: file, key: key, reason: "cannot read \(path): \(reason)")
            case nil:
                throw ConfigError(file: file, key: key, reason: "cannot read \(path): the loader did not read it")
            }
        }
        return config
    }
}
