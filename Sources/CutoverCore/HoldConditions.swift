/// Why new work of a profile waits in its hold queue instead of being routed.
///
/// One rule for both sides of a hold: the connection asks it whether to park (`reason(for:) != nil`)
/// and the hold queue asks it, at every publish, which parked work may go. Three things can hold, and
/// they overlap: a pause holds everything, the read-only gate at `hold` holds unsafe requests, and an
/// empty candidate list holds everything when `hold_when_unavailable` is set. Because the release is
/// decided by the same rule, `resume` leaves a write parked while the gate still holds it, and
/// `readonly off` leaves it parked while the profile is still paused: work goes only when nothing
/// holds it any more.
public struct HoldConditions: Sendable, Equatable {
    /// The profile is paused (`pause PROFILE`).
    public var paused: Bool
    /// The read-only gate is at `hold`.
    public var writesHeld: Bool
    /// No endpoint may take work and the profile holds rather than answer 503 (`hold_when_unavailable`).
    public var unavailable: Bool

    public init(paused: Bool = false, writesHeld: Bool = false, unavailable: Bool = false) {
        self.paused = paused
        self.writesHeld = writesHeld
        self.unavailable = unavailable
    }

    /// The conditions of a profile as a snapshot sees it.
    public init(paused: Bool, readOnly: ReadOnlyGate, hasCandidates: Bool, holdWhenUnavailable: Bool) {
        let writesHeld: Bool
        switch readOnly {
        case .hold: writesHeld = true
        case .off, .on: writesHeld = false
        }
        self.init(paused: paused, writesHeld: writesHeld, unavailable: !hasCandidates && holdWhenUnavailable)
    }

    /// What is being held: the read-only gate holds only unsafe HTTP requests; it never applies to
    /// TCP connections (a tunnel has no method to judge).
    public enum Work: Sendable, Equatable {
        /// An HTTP request with GET, HEAD or OPTIONS.
        case safeRequest
        /// An HTTP request with any other method.
        case unsafeRequest
        /// A TCP-mode connection.
        case connection

        /// The kind of an HTTP request with this method.
        public init(method: String) {
            self = ReadOnlyGate.isSafe(method: method) ? .safeRequest : .unsafeRequest
        }
    }

    /// What holds a piece of work, for its answer when the hold gives up.
    public enum Reason: Sendable, Equatable {
        case paused
        case writesHeld
        case unavailable
    }

    /// The first condition that holds `work` (pause, then the write hold, then unavailability), or
    /// `nil` when `work` may be routed.
    public func reason(for work: Work) -> Reason? {
        if paused { return .paused }
        switch work {
        case .unsafeRequest:
            if writesHeld { return .writesHeld }
        case .safeRequest, .connection:
            break
        }
        return unavailable ? .unavailable : nil
    }

    /// Whether `work` must wait.
    public func holds(_ work: Work) -> Bool {
        reason(for: work) != nil
    }
}
