/// Why a config was refused: the file, the key path inside it, and a reason an operator can act on.
///
/// Printed as `FILE: KEY: REASON`, e.g.
/// `cutover.json: profiles[0].endpoints[1].address: "10.0.0.5" has no port`. The key is empty for
/// whole-file problems (unreadable file, invalid JSON), and the description then reads `FILE: REASON`.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The config file as named by the operator, or `"command line"` for flag-built configs.
    public var file: String
    /// Key path such as `listeners[0].profile` or `profiles[1].probe.interval`; empty for the whole file.
    public var key: String
    /// A phrase an operator can act on, e.g. `"10.0.0.5" has no port`.
    public var reason: String

    public init(file: String, key: String, reason: String) {
        self.file = file
        self.key = key
        self.reason = reason
    }

    public var description: String {
        key.isEmpty ? "\(file): \(reason)" : "\(file): \(key): \(reason)"
    }
}
