/// A message Cutover refuses to parse or forward, with the status to answer and a short reason an
/// operator can read in the log.
///
/// Request-side problems carry 400, 413, 414, 431, 501 or 505; response-side problems carry 502
/// because the fault is the upstream's. `ChunkedBodyScanner` always reports 400: the I/O layer
/// maps a bad upstream body to 502.
public struct HTTPParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The status to answer with, e.g. 400 or 431.
    public var status: Int
    /// What was wrong, e.g. "Content-Length and Transfer-Encoding both present".
    public var reason: String

    /// An error with this status and operator-readable reason.
    public init(status: Int, reason: String) {
        self.status = status
        self.reason = reason
    }

    /// `400 Bad Request: bare LF in head`.
    public var description: String {
        "\(status) \(HTTPErrorResponse.reasonPhrase(status)): \(reason)"
    }

    static func badRequest(_ reason: String) -> HTTPParseError {
        HTTPParseError(status: 400, reason: reason)
    }
}
