/// A point on the proxy's monotonic clock, in milliseconds since an arbitrary origin.
///
/// The core never reads a clock: the runtime reads `CLOCK_MONOTONIC` and passes the instant in,
/// so tests pick their own times.
public struct MonotonicInstant: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Milliseconds since the clock's origin.
    public let milliseconds: UInt64

    /// The instant `milliseconds` after the clock's origin.
    public init(milliseconds: UInt64) {
        self.milliseconds = milliseconds
    }

    /// The instant `duration` later (a negative duration counts as zero).
    public static func + (instant: MonotonicInstant, duration: Duration) -> MonotonicInstant {
        MonotonicInstant(milliseconds: instant.milliseconds + UInt64(max(0, duration.milliseconds)))
    }

    /// How long after `earlier` this instant is (zero if it is not later).
    public func since(_ earlier: MonotonicInstant) -> Duration {
        .milliseconds(Int64(milliseconds >= earlier.milliseconds ? milliseconds - earlier.milliseconds : 0))
    }

    public static func < (a: MonotonicInstant, b: MonotonicInstant) -> Bool {
        a.milliseconds < b.milliseconds
    }

    /// `12345ms`, for test failures.
    public var description: String { "\(milliseconds)ms" }
}
