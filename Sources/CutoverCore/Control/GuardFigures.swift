/// What a guard reads of one endpoint's counters at one instant: totals since the proxy started.
///
/// The guard never keeps counters of its own: the hot path already counts every answer, 5xx and
/// failed connect, and the latency histogram (`EndpointCounters`). Judging is a difference of two
/// samples, taken on the control queue, so a guard costs the hot path nothing.
public struct GuardSample: Sendable, Equatable {
    /// Exchanges ended, whatever their status (the `none` class included).
    public var answers: Int
    /// Of those, answers with a 5xx status (including the proxy's own 502/504 for this endpoint).
    public var status5xx: Int
    /// Connects refused, reset or timed out.
    public var connectFailures: Int
    /// Finite bucket bounds of the latency histogram, in milliseconds, ascending.
    public var boundsMilliseconds: [UInt64]
    /// Relayed exchanges at most as long as each bound (cumulative), then the total.
    public var cumulativeLatency: [Int]
    /// Relayed exchanges timed (the histogram's count).
    public var timed: Int

    /// A sample from counted figures.
    public init(answers: Int, status5xx: Int, connectFailures: Int, boundsMilliseconds: [UInt64], cumulativeLatency: [Int], timed: Int) {
        self.answers = answers
        self.status5xx = status5xx
        self.connectFailures = connectFailures
        self.boundsMilliseconds = boundsMilliseconds
        self.cumulativeLatency = cumulativeLatency
        self.timed = timed
    }

    /// Reads `counters` now (relaxed loads: a reading may be a request apart between counters,
    /// which a ratio over dozens of requests does not feel).
    public init(_ counters: EndpointCounters) {
        let reading = counters.latency.reading()
        self.init(
            answers: counters.responsesByClass.reduce(0) { $0 + $1.count },
            status5xx: counters.responses5xx.load(ordering: .relaxed),
            connectFailures: counters.connectErrors.load(ordering: .relaxed),
            boundsMilliseconds: counters.latency.boundsMilliseconds,
            cumulativeLatency: reading.buckets.map(\.cumulativeCount),
            timed: reading.count)
    }
}

/// The figures of a guard window (or of any span): what the endpoint answered between two samples.
public struct GuardFigures: Sendable, Equatable {
    /// Answers judged.
    public var requests: Int
    /// Of those, 5xx.
    public var status5xx: Int
    /// Failed connects.
    public var connectFailures: Int
    /// The p99 latency of relayed answers, as the histogram bucket it falls in; `nil` with nothing timed.
    public var p99: P99?
    /// Relayed answers timed by the histogram.
    public var timed: Int

    /// The histogram bucket holding the 99th percentile: every answer in it took longer than
    /// `lower` and at most `upper` (`nil`: longer than the last finite bound).
    ///
    /// The histogram has fixed bounds (1, 5, 10, 25, 50, 100, 250, 500 ms, 1 s, …), so the p99 is
    /// known only to its bucket. A guard breaches only when the p99 is *certainly* above the
    /// threshold (`lower >= max`), so a threshold between two bounds acts as the next bound up:
    /// no revert on a figure that may be fine.
    public struct P99: Sendable, Equatable, CustomStringConvertible {
        public var lower: Duration
        public var upper: Duration?

        public init(lower: Duration, upper: Duration?) {
            self.lower = lower
            self.upper = upper
        }

        /// `250ms..500ms`, or `>30s` past the last bound.
        public var description: String {
            guard let upper else { return ">\(DurationText.format(lower))" }
            return "\(DurationText.format(lower))..\(DurationText.format(upper))"
        }
    }

    /// Figures counted directly (tests, and the empty window).
    public init(requests: Int = 0, status5xx: Int = 0, connectFailures: Int = 0, p99: P99? = nil, timed: Int = 0) {
        self.requests = requests
        self.status5xx = status5xx
        self.connectFailures = connectFailures
        self.p99 = p99
        self.timed = timed
    }

    /// What happened between `start` and `end` (two samples of the same endpoint's counters).
    public init(from start: GuardSample, to end: GuardSample) {
        requests = max(0, end.answers - start.answers)
        status5xx = max(0, end.status5xx - start.status5xx)
        connectFailures = max(0, end.connectFailures - start.connectFailures)
        timed = max(0, end.timed - start.timed)
        p99 = LatencySpan(from: start, to: end).map { span in
            let index = span.bucket(ofPercentile: 99)
            let bounds = span.boundsMilliseconds
            guard index < bounds.count else { return P99(lower: .milliseconds(Int64(bounds.last ?? 0)), upper: nil) }
            let lower: Duration = index == 0 ? .zero : .milliseconds(Int64(bounds[index - 1]))
            return P99(lower: lower, upper: .milliseconds(Int64(bounds[index])))
        }
    }

    /// 5xx answers over answers judged (0 with none).
    public var ratio5xx: Double { requests == 0 ? 0 : Double(status5xx) / Double(requests) }

    /// The first threshold these figures breach, in the order connect failures, 5xx ratio, p99,
    /// p99 ratio; `nil` when none. `standbyP99` is the old endpoint's recent p99, for `max_p99_ratio`.
    public func breach(of thresholds: GuardConfig, standbyP99: P99?) -> GuardBreach? {
        // A refused connect is a fact, not a statistic: judged from the first request.
        if let maximum = thresholds.maxConnectFailures, connectFailures > maximum {
            return .connectFailures(count: connectFailures, maximum: maximum, requests: requests)
        }
        guard requests >= thresholds.minRequests, requests > 0 else { return nil }
        if let maximum = thresholds.max5xxRatio, ratio5xx > maximum {
            return .status5xxRatio(ratio: ratio5xx, maximum: maximum, requests: requests)
        }
        if let maximum = thresholds.maxP99, let p99, p99.lower >= maximum {
            return .p99(p99, maximum: maximum, requests: requests)
        }
        if let ratio = thresholds.maxP99Ratio, let p99, let standbyUpper = standbyP99?.upper {
            let limit = Duration.milliseconds(Int64((Double(standbyUpper.milliseconds) * ratio).rounded(.up)))
            if p99.lower >= limit { return .p99Ratio(p99, ratio: ratio, standby: standbyUpper, requests: requests) }
        }
        return nil
    }
}

/// The threshold a guard window breached, with the measured figure.
public enum GuardBreach: Sendable, Equatable, CustomStringConvertible {
    /// More failed connects than `max_connect_failures`.
    case connectFailures(count: Int, maximum: Int, requests: Int)
    /// A 5xx share above `max_5xx_ratio`.
    case status5xxRatio(ratio: Double, maximum: Double, requests: Int)
    /// A p99 certainly above `max_p99`.
    case p99(GuardFigures.P99, maximum: Duration, requests: Int)
    /// A p99 certainly above `max_p99_ratio` × the old endpoint's recent p99 (`standby`, its bucket's upper bound).
    case p99Ratio(GuardFigures.P99, ratio: Double, standby: Duration, requests: Int)

    /// The threshold's config key.
    public var threshold: String {
        switch self {
        case .connectFailures: return "max_connect_failures"
        case .status5xxRatio: return "max_5xx_ratio"
        case .p99: return "max_p99"
        case .p99Ratio: return "max_p99_ratio"
        }
    }

    /// `5xx ratio 0.31 > 0.05 over 54 requests`: the figure, the threshold and what it was measured on.
    public var description: String {
        switch self {
        case .connectFailures(let count, let maximum, let requests):
            return "connect failures \(count) > \(maximum) over \(requests) requests"
        case .status5xxRatio(let ratio, let maximum, let requests):
            return "5xx ratio \(Self.format(ratio)) > \(Self.format(maximum)) over \(requests) requests"
        case .p99(let p99, let maximum, let requests):
            return "p99 \(p99) > \(DurationText.format(maximum)) over \(requests) requests"
        case .p99Ratio(let p99, let ratio, let standby, let requests):
            return "p99 \(p99) > \(Self.format(ratio)) × old endpoint's p99 \(DurationText.format(standby)) over \(requests) requests"
        }
    }

    /// Two decimals, as operators compare ratios (`0.31`).
    static func format(_ value: Double) -> String {
        let hundredths = Int((value * 100).rounded())
        let fraction = hundredths % 100
        return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }
}
