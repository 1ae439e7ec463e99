import CutoverCore
import Dispatch
import Foundation

/// Runs the active health probe of every probed endpoint, on a jittered interval, and hands each
/// result to the runtime (which counts it in the endpoint's `EndpointHealth`).
///
/// Scheduling and counters live on the control queue; each probe run gets a thread of its own
/// (`Probe.run` blocks up to the probe's timeout), so a hung endpoint can stall neither the control
/// queue, nor a worker, nor the shared Dispatch pool that the workers run on.
final class HealthProber: @unchecked Sendable {  // `loops` and `report` are touched only on `queue`
    /// What to probe for one endpoint; an unchanged plan keeps its loop across reloads.
    struct Plan: Sendable, Equatable {
        let profile: String
        let endpoint: String
        let probe: ProbeConfig
        /// The endpoint's address with the probe's `port` applied: what is probed.
        let address: HostPort
        /// `address` resolved (bytes of a `sockaddr_in`/`sockaddr_in6`).
        let socketAddress: [UInt8]
        /// The endpoint's TLS, when it is reached over TLS: the probe then shakes hands and asks inside.
        var tls: TLSClientContext? = nil
        /// Sent first on each probe connection, before TLS: a LOCAL PROXY header to a `send_proxy`
        /// endpoint probed on its traffic port (it expects one on every connection); empty otherwise.
        var preamble: [UInt8] = []

        /// `profile/name`.
        var key: String { "\(profile)/\(endpoint)" }

        static func == (a: Plan, b: Plan) -> Bool {
            a.profile == b.profile && a.endpoint == b.endpoint && a.probe == b.probe && a.address == b.address
                && a.socketAddress == b.socketAddress && a.tls === b.tls && a.preamble == b.preamble
        }
    }

    /// Receives one probe result, on `queue`.
    typealias Report = (Plan, Probe.Result) -> Void

    /// The probing of one endpoint: its plan, its record, and whether it was stopped.
    private final class Loop: @unchecked Sendable {  // mutable fields touched only on the control queue
        let plan: Plan
        var record = ProbeRecord()
        /// Set when a reload replaced or removed the plan; a run in progress is then discarded.
        var stopped = false

        init(plan: Plan) {
            self.plan = plan
        }
    }

    /// Fraction of the interval by which each wait is randomly lengthened or shortened.
    static let jitter = 0.1

    private let queue: DispatchQueue
    private var loops: [String: Loop] = [:]
    private var report: Report?

    /// A prober that schedules on `queue` and reports there.
    init(queue: DispatchQueue) {
        self.queue = queue
    }

    /// The plans being probed now, by `profile/name`.
    var plans: [String: Plan] { loops.mapValues(\.plan) }

    /// Probe results so far per `profile/endpoint`, for metrics.
    var records: [String: ProbeRecord] { loops.mapValues(\.record) }

    /// Probes exactly `plans` from now on: unchanged plans keep running, changed and new ones start
    /// afresh (first run at a random point of their first interval), others stop.
    ///
    /// - Returns: the plans that started afresh, and the keys of endpoints that were probed and no longer are.
    /// - Important: call on `queue`.
    @discardableResult
    func update(_ plans: [Plan], report: @escaping Report) -> (started: [Plan], dropped: [String]) {
        dispatchPrecondition(condition: .onQueue(queue))
        self.report = report
        var next: [String: Loop] = [:]
        var started: [Plan] = []
        for plan in plans {
            if let running = loops[plan.key], running.plan == plan {
                next[plan.key] = running
                continue
            }
            loops[plan.key]?.stopped = true
            let loop = Loop(plan: plan)
            next[plan.key] = loop
            started.append(plan)
            // Spread first runs over the interval so that endpoints never probe in lock-step.
            schedule(loop, after: Self.scaled(plan.probe.interval, by: Double.random(in: 0..<1)))
        }
        let dropped = loops.keys.filter { next[$0] == nil }
        for key in dropped { loops[key]?.stopped = true }
        loops = next
        return (started, dropped)
    }

    private func schedule(_ loop: Loop, after delay: Duration) {
        queue.asyncAfter(deadline: .now() + .milliseconds(Int(max(0, delay.milliseconds)))) { [weak self] in
            self?.launch(loop)
        }
    }

    /// Starts one run on a thread of its own; the result comes back to `queue`.
    private func launch(_ loop: Loop) {
        guard !loop.stopped else { return }
        let started = monotonicMilliseconds()
        let plan = loop.plan
        let queue = self.queue
        Thread.detachNewThread { [weak self] in
            let result = Probe.run(plan)
            queue.async { [weak self] in self?.finished(loop, result: result, started: started) }
        }
    }

    private func finished(_ loop: Loop, result: Probe.Result, started: UInt64) {
        guard !loop.stopped else { return }
        let elapsed = Duration.milliseconds(Int64(monotonicMilliseconds() - started))
        loop.record.add(result.outcome, duration: elapsed)
        report?(loop.plan, result)
        // Runs start one jittered interval apart, however long each took (timeout ≤ interval).
        let interval = Self.scaled(loop.plan.probe.interval, by: 1 + Double.random(in: -Self.jitter...Self.jitter))
        schedule(loop, after: max(.zero, interval - elapsed))
    }

    private static func scaled(_ duration: Duration, by factor: Double) -> Duration {
        .milliseconds(Int64((Double(duration.milliseconds) * factor).rounded()))
    }
}

/// What the probes of one endpoint returned so far: counts by result and the last run's duration.
struct ProbeRecord: Sendable {
    var successes = 0
    var failures = 0
    var lastDuration: Duration = .zero

    mutating func add(_ outcome: ProbeOutcome, duration: Duration) {
        switch outcome {
        case .success: successes += 1
        case .failure: failures += 1
        }
        lastDuration = duration
    }
}
