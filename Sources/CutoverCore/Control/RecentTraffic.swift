/// One endpoint's counter samples over about the last minute, and what they say about it: requests
/// per second and latency percentiles, for `show endpoints`, `/status` and a guard's `max_p99_ratio`.
///
/// The hot path already counts every answer and times it into a histogram (`EndpointCounters`);
/// the control queue samples those totals every `interval` and keeps `capacity` samples, so a
/// figure "over the last minute" is the difference between the oldest kept sample and the counters
/// now. Nothing is counted twice and the hot path pays nothing. With 10 s samples, seven cover the
/// minute before any instant (60 to 70 s back); a proxy younger than that reports over its life.
public struct CounterRing: Sendable, Equatable {
    /// How often the runtime samples the counters.
    public static let interval: Duration = .seconds(10)
    /// Samples kept: enough that the oldest is at least a minute old.
    public static let capacity = 7

    /// One sample and when it was taken.
    public struct Entry: Sendable, Equatable {
        public var at: MonotonicInstant
        public var sample: GuardSample
    }

    /// Oldest first, at most `capacity`.
    public private(set) var entries: [Entry] = []

    /// An empty ring.
    public init() {}

    /// Keeps `sample`, taken at `now`, dropping the oldest past `capacity`.
    public mutating func record(_ sample: GuardSample, at now: MonotonicInstant) {
        entries.append(Entry(at: now, sample: sample))
        if entries.count > Self.capacity { entries.removeFirst(entries.count - Self.capacity) }
    }

    /// The oldest sample kept, `nil` before the first.
    public var oldest: Entry? { entries.first }

    /// What the endpoint did between the oldest sample and `current` (its counters read at `now`);
    /// `nil` before the first sample.
    public func traffic(current: GuardSample, now: MonotonicInstant) -> RecentTraffic? {
        guard let oldest else { return nil }
        return RecentTraffic(from: oldest.sample, to: current, span: now.since(oldest.at))
    }
}

/// Requests per second and latency percentiles of one endpoint over a span (see `CounterRing`).
public struct RecentTraffic: Sendable, Equatable {
    /// Answers counted in the span, whatever their status.
    public var requests: Int
    /// How long the span is.
    public var span: Duration
    /// `requests / span`; a span shorter than a second counts as one (a rate over a few
    /// milliseconds would be a wild figure).
    public var requestsPerSecond: Double
    /// Median and 99th percentile of relayed answers in milliseconds, `nil` with nothing timed.
    public var p50Milliseconds: Double?
    public var p99Milliseconds: Double?

    /// The figures between two samples of the same counters, `span` apart.
    public init(from start: GuardSample, to end: GuardSample, span: Duration) {
        requests = max(0, end.answers - start.answers)
        self.span = span
        requestsPerSecond = Double(requests) * 1000 / Double(max(1000, span.milliseconds))
        let latency = LatencySpan(from: start, to: end)
        p50Milliseconds = latency?.estimate(percentile: 50)
        p99Milliseconds = latency?.estimate(percentile: 99)
    }

    /// Figures given directly (tests).
    public init(requests: Int, span: Duration, requestsPerSecond: Double, p50Milliseconds: Double?, p99Milliseconds: Double?) {
        self.requests = requests
        self.span = span
        self.requestsPerSecond = requestsPerSecond
        self.p50Milliseconds = p50Milliseconds
        self.p99Milliseconds = p99Milliseconds
    }
}

/// The latency histogram's counts between two samples: which bucket holds a quantile, and an
/// estimate inside it.
public struct LatencySpan: Sendable, Equatable {
    /// Finite bucket bounds in milliseconds, ascending.
    public var boundsMilliseconds: [UInt64]
    /// Answers at most as long as each bound, in the span (cumulative).
    public var cumulative: [Int]
    /// Answers timed in the span, the `+Inf` bucket included.
    public var timed: Int

    /// The span between two samples; `nil` with nothing timed in it, or when the histogram's
    /// bounds differ between them (it was rebuilt: there is nothing to compare).
    public init?(from start: GuardSample, to end: GuardSample) {
        timed = max(0, end.timed - start.timed)
        guard timed > 0, start.boundsMilliseconds == end.boundsMilliseconds,
              start.cumulativeLatency.count == end.cumulativeLatency.count,
              end.cumulativeLatency.count == end.boundsMilliseconds.count else { return nil }
        boundsMilliseconds = end.boundsMilliseconds
        cumulative = zip(end.cumulativeLatency, start.cumulativeLatency).map { max(0, $0 - $1) }
    }

    /// The bucket holding percentile `p` (1...100): its index among the finite bounds, or
    /// `boundsMilliseconds.count` for the `+Inf` bucket.
    public func bucket(ofPercentile p: Int) -> Int {
        let rank = rank(p)
        return cumulative.firstIndex { $0 >= rank } ?? boundsMilliseconds.count
    }

    /// Percentile `p` in milliseconds, interpolated linearly inside its bucket (as Prometheus'
    /// `histogram_quantile` does); past the last finite bound, that bound (all that is known).
    public func estimate(percentile p: Int) -> Double {
        let index = bucket(ofPercentile: p)
        guard index < boundsMilliseconds.count else { return Double(boundsMilliseconds.last ?? 0) }
        let lower = index == 0 ? 0 : Double(boundsMilliseconds[index - 1])
        let below = index == 0 ? 0 : cumulative[index - 1]
        let inBucket = cumulative[index] - below
        let upper = Double(boundsMilliseconds[index])
        guard inBucket > 0 else { return upper }
        return lower + (upper - lower) * Double(rank(p) - below) / Double(inBucket)
    }

    /// `ceil(timed × p / 100)` in integers: the position of the answer the percentile names.
    private func rank(_ p: Int) -> Int {
        max(1, (timed * p + 99) / 100)
    }
}
