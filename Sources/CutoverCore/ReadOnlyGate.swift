/// The read-only gate of a profile: what becomes of unsafe requests (POST, PUT, PATCH, DELETE and
/// any other method but GET, HEAD and OPTIONS). Safe methods pass in every position.
///
/// `hold` exists for a database read-only window: a write that waits and then lands on the new
/// version is better than a write refused with 503. It holds in the profile's hold queue, with the
/// same bounds as a pause (`hold_timeout`, `max_held`).
public enum ReadOnlyGate: String, Codable, Sendable, Equatable, CaseIterable {
    /// Every method passes.
    case off
    /// Unsafe requests are answered 503 with Retry-After at once.
    case on
    /// Unsafe requests wait in the hold queue and are released, in arrival order, when the gate
    /// leaves `hold` (to the backend at `off`, to a 503 at `on`).
    case hold

    /// What the gate does with a request of this method.
    public func verdict(method: String) -> Verdict {
        if Self.isSafe(method: method) { return .pass }
        switch self {
        case .off: return .pass
        case .on: return .refuse
        case .hold: return .hold
        }
    }

    /// What the gate decided for one request.
    public enum Verdict: Sendable, Equatable {
        case pass
        /// Answer 503: the gate is closed to this method.
        case refuse
        /// Wait in the hold queue until the gate opens.
        case hold
    }

    /// Whether writes are kept from the backends (`on` or `hold`): what `readonly` means in answers
    /// and metrics that predate `hold`, so scripts reading it keep their meaning.
    public var isClosed: Bool {
        switch self {
        case .off: return false
        case .on, .hold: return true
        }
    }

    /// GET, HEAD and OPTIONS (case-sensitive, as RFC 9110 methods are): what every gate lets through.
    public static func isSafe(method: String) -> Bool {
        method == "GET" || method == "HEAD" || method == "OPTIONS"
    }
}
