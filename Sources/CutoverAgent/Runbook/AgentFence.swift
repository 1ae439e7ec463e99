import CutoverCore
import Dispatch
import Foundation
import Synchronization

/// A `db-readonly` step's fence taken through a running agent under a lease: the agent holds the
/// database's credentials and gives it back read-write if the lease runs out, so a runner killed
/// mid-run never leaves a database read-only for longer than the lease.
struct AgentFence {
    /// The database as the agent knows it: a name from its `databases`, or a connection string.
    let target: String
    let controlDatabase: String?
    let lease: FenceLease

    private var line: AdminLine { AdminLine(socket: lease.agent, peer: "agent") }

    /// `target` as one word of the agent's command line (its quotes keep a DSN's spaces).
    private func word() throws(StepFailure) -> String {
        if !target.contains(where: \.isWhitespace) && !target.contains("'") && !target.contains("\"") { return target }
        if !target.contains("\"") { return "\"\(target)\"" }
        if !target.contains("'") { return "'\(target)'" }
        throw StepFailure("the database \(StepAction.redacted(target)) has both kinds of quote in it and cannot be sent to the agent; name it in the agent's databases instead")
    }

    private var controlOption: String { controlDatabase.map { " --control-db \($0)" } ?? "" }

    func on(graceMs: Int64, timeout: Duration) throws(StepFailure) -> FenceReport {
        let command = "db readonly on \(try word()) --grace \(DurationText.format(.milliseconds(graceMs)))"
            + " --lease \(DurationText.format(.milliseconds(lease.leaseMs)))" + controlOption
        return try report(line.send(command, as: FenceReport.self, timeout: timeout))
    }

    /// Gives the database back and ends the lease (the agent forgets a lease only after its `off`).
    func off(timeout: Duration) throws(StepFailure) -> FenceReport {
        try report(line.send("db readonly off \(try word())" + controlOption, as: FenceReport.self, timeout: timeout))
    }

    /// `read-only` or `read-write`, as the database says through the agent.
    func mode() throws(StepFailure) -> String {
        let answer = try line.send("db readonly status \(try word())" + controlOption, as: DatabaseStatusAnswer.self, timeout: .seconds(30))
        guard let data = answer.data else { throw StepFailure("the agent's status answer has no status") }
        return data.status.mode
    }

    /// Pushes the lease's end one whole lease ahead.
    func renew() throws(StepFailure) {
        _ = try line.send("lease renew \(try word()) \(DurationText.format(.milliseconds(lease.leaseMs)))", as: LeaseStatus.self, timeout: .seconds(5))
    }

    /// Ends the lease and keeps the fence: the run ended and a person now owns the database's mode.
    func release() throws(StepFailure) {
        _ = try line.send("lease release \(try word())", as: LeaseStatus.self, timeout: .seconds(5))
    }

    private func report(_ answer: AdminAnswer<FenceReport>) throws(StepFailure) -> FenceReport {
        guard let report = answer.data else { throw StepFailure("the agent's fence answer has no report") }
        return report
    }
}

/// Keeps a runner's agent leases alive: renews each one every third of its length while the runner
/// lives, so only the runner's death (or an unreachable agent) lets them run out.
///
/// When the runner ends on purpose, `finish` releases the ones still held (the database stays as the
/// run left it, for a person to decide); a lease whose give-back failed is `abandon`ed instead, so the
/// agent still gives the database back when it expires.
final class LeaseKeeper: @unchecked Sendable {  // the timer is touched only by init and finish; state sits behind the mutex
    private struct Held: Sendable {
        var fences: [HeldFence] = []
        /// Renewal failures, reported once per streak per fence.
        var failing: Set<Int> = []
        var finished = false
    }

    private let held = Mutex(Held())
    private let queue = DispatchQueue(label: "cutover.lease-keeper")
    private let timer: DispatchSourceTimer
    private let output: @Sendable (String) -> Void

    init(holding fences: [HeldFence], output: @escaping @Sendable (String) -> Void) {
        self.output = output
        timer = DispatchSource.makeTimerSource(queue: queue)
        held.withLock { $0.fences = fences.filter { $0.lease != nil } }
        timer.setEventHandler { [weak self] in self?.renewAll() }
        reschedule()
        timer.resume()
    }

    /// The shortest lease held sets the beat (a third of it); a runbook rarely has more than one.
    private func reschedule() {
        let beat = held.withLock { $0.fences.compactMap(\.lease?.leaseMs).min() }.map { max($0 / 3, 200) } ?? 1000
        timer.schedule(deadline: .now() + .milliseconds(Int(beat)), repeating: .milliseconds(Int(beat)))
    }

    /// A step took `fence` (a leased one is renewed from now on).
    func took(_ fence: HeldFence) {
        guard fence.lease != nil else { return }
        held.withLock { state in
            state.fences.removeAll { $0.dsn == fence.dsn }
            state.fences.append(fence)
        }
        reschedule()
    }

    /// `dsn` was given back (its lease ended with the `off`).
    func gaveBack(_ dsn: String) {
        held.withLock { $0.fences.removeAll { $0.dsn == dsn } }
    }

    /// Stops renewing `dsn` without releasing it: the agent gives it back when the lease runs out.
    func abandon(_ dsn: String) {
        held.withLock { $0.fences.removeAll { $0.dsn == dsn } }
    }

    /// Stops renewing and releases every lease still held (the database stays as it is).
    func finish() {
        let fences = held.withLock { state -> [HeldFence] in
            state.finished = true
            defer { state.fences = [] }
            return state.fences
        }
        timer.cancel()
        queue.sync {}  // a renewal in progress finishes before the releases
        for fence in fences {
            guard let fence = Self.agentFence(fence) else { continue }
            do {
                try fence.release()
                output("agent lease on \(StepAction.redacted(fence.target)) released: it stays read-only until someone turns it off")
            } catch {
                output("could not release the agent lease on \(StepAction.redacted(fence.target)) (\(error)); the agent gives it back read-write when the lease runs out")
            }
        }
    }

    private func renewAll() {
        let fences = held.withLock { $0.finished ? [] : $0.fences }
        for held in fences {
            guard let fence = Self.agentFence(held) else { continue }
            do {
                try fence.renew()
                if self.held.withLock({ $0.failing.remove(held.stepIndex) }) != nil {
                    output("agent lease on \(StepAction.redacted(fence.target)) renewed again")
                }
            } catch {
                if self.held.withLock({ $0.failing.insert(held.stepIndex).inserted }) {
                    output("could not renew the agent lease on \(StepAction.redacted(fence.target)) (\(error)); retrying; the agent gives the database back if the lease runs out")
                }
            }
        }
    }

    static func agentFence(_ held: HeldFence) -> AgentFence? {
        held.lease.map { AgentFence(target: held.dsn, controlDatabase: held.controlDatabase, lease: $0) }
    }
}
