import Synchronization

/// Request durations counted into fixed buckets, lock-free: recording is one relaxed atomic add to
/// a bucket and one to the sum, so the hot path never waits for a reader.
///
/// Buckets are not cumulative in memory (each duration lands in exactly one); `reading()` builds the
/// cumulative `le` view Prometheus expects. A reading taken while requests finish may see a sum one
/// request ahead of the buckets: harmless for rates.
public final class LatencyHistogram: Sendable {
    /// Upper bounds of the finite buckets, in milliseconds (the proxy's clock resolution); a last
    /// bucket, `+Inf`, takes everything slower.
    public static let defaultBoundsMilliseconds: [UInt64] = [1, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000]

    /// The finite upper bounds in milliseconds, ascending.
    public let boundsMilliseconds: [UInt64]
    /// One counter per finite bound, then the `+Inf` counter.
    private let buckets: [Bucket]
    private let sumMilliseconds = Atomic<Int>(0)

    /// A single counter; a class because `Atomic` cannot sit in an array.
    private final class Bucket: Sendable {
        let count = Atomic<Int>(0)
    }

    /// What a scrape sees: cumulative counts per bound, in seconds.
    public struct Reading: Sendable, Equatable {
        /// `(upper bound in seconds, requests at most that long)`, ascending, without `+Inf`.
        public let buckets: [(seconds: Double, cumulativeCount: Int)]
        /// All recorded requests (the `+Inf` bucket and `_count`).
        public let count: Int
        public let sumSeconds: Double

        public static func == (lhs: Reading, rhs: Reading) -> Bool {
            lhs.count == rhs.count && lhs.sumSeconds == rhs.sumSeconds
                && lhs.buckets.map(\.seconds) == rhs.buckets.map(\.seconds)
                && lhs.buckets.map(\.cumulativeCount) == rhs.buckets.map(\.cumulativeCount)
        }
    }

    /// A histogram with these finite bounds (ascending, in milliseconds).
    public init(boundsMilliseconds: [UInt64] = LatencyHistogram.defaultBoundsMilliseconds) {
        self.boundsMilliseconds = boundsMilliseconds
        self.buckets = (0...boundsMilliseconds.count).map { _ in Bucket() }
    }

    /// Counts one request that took `milliseconds`.
    ///
    /// - Important: callable from any thread; never blocks.
    @inline(__always)
    public func record(milliseconds: UInt64) {
        var index = 0
        while index < boundsMilliseconds.count && milliseconds > boundsMilliseconds[index] { index += 1 }
        buckets[index].count.wrappingAdd(1, ordering: .relaxed)
        sumMilliseconds.wrappingAdd(Int(clamping: milliseconds), ordering: .relaxed)
    }

    /// The cumulative view of the counters now.
    public func reading() -> Reading {
        var running = 0
        var cumulative: [(seconds: Double, cumulativeCount: Int)] = []
        for (index, bound) in boundsMilliseconds.enumerated() {
            running += buckets[index].count.load(ordering: .relaxed)
            cumulative.append((Double(bound) / 1000, running))
        }
        running += buckets[boundsMilliseconds.count].count.load(ordering: .relaxed)
        return Reading(buckets: cumulative, count: running, sumSeconds: Double(sumMilliseconds.load(ordering: .relaxed)) / 1000)
    }
}
