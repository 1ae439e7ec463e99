/// The HTTP versions Cutover speaks on either side; any other `HTTP/x.y` is answered with 505.
public enum HTTPVersion: Sendable, Equatable {
    /// `HTTP/1.0`: connections close after each exchange unless `Connection: keep-alive` says otherwise.
    case http1_0
    /// `HTTP/1.1`: persistent connections by default, chunked transfer coding allowed.
    case http1_1

    /// The version as it appears on a start line, e.g. `HTTP/1.1`.
    public var text: String {
        switch self {
        case .http1_0: return "HTTP/1.0"
        case .http1_1: return "HTTP/1.1"
        }
    }

    /// The protocol-version part of a `Via` entry, e.g. `1.1`.
    public var viaText: String {
        switch self {
        case .http1_0: return "1.0"
        case .http1_1: return "1.1"
        }
    }
}
