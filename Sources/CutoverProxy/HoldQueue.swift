import CutoverCore
import Synchronization

/// Requests and connections of one profile waiting for a resume, for the read-only gate to leave
/// `hold`, or for an endpoint to come back.
///
/// The queue, not the snapshot, decides whether to hold: a request that read a paused snapshot just
/// before `resume` would otherwise be parked after the release and wait for its timeout.
final class HoldQueue: Sendable {
    /// A parked piece of work; `release` re-routes it on its own queue.
    struct Held: Sendable {
        let id: UInt64
        /// What it is decides what holds it: the read-only gate holds only unsafe requests.
        let work: HoldConditions.Work
        let release: @Sendable () -> Void
    }

    /// What `hold` decided.
    enum Outcome: Equatable {
        case held(id: UInt64, reason: HoldConditions.Reason)
        /// `max_held` reached: answer 503 with Retry-After.
        case full(reason: HoldConditions.Reason)
        /// The world changed since the caller read its snapshot: route again.
        case routeAgain
    }

    private struct State {
        var generation: UInt64 = 0
        var conditions = HoldConditions()
        var nextID: UInt64 = 1
        var waiting: [Held] = []
    }

    private let state = Mutex(State())

    /// Parks work seen unroutable in snapshot `generation`, if the queue still holds it at that generation.
    func hold(seenGeneration generation: UInt64, work: HoldConditions.Work, maxHeld: Int, release: @escaping @Sendable () -> Void) -> Outcome {
        state.withLock { state in
            guard state.generation == generation, let reason = state.conditions.reason(for: work) else {
                return .routeAgain
            }
            // One bound for all held work of the profile, whatever holds it: `max_held` is about memory
            // and descriptors, which a held write costs as much as a held read.
            guard state.waiting.count < maxHeld else { return .full(reason: reason) }
            let id = state.nextID
            state.nextID += 1
            state.waiting.append(Held(id: id, work: work, release: release))
            return .held(id: id, reason: reason)
        }
    }

    /// Forgets held work that timed out or whose client left; false when it was already released.
    func cancel(id: UInt64) -> Bool {
        state.withLock { state in
            guard let index = state.waiting.firstIndex(where: { $0.id == id }) else { return false }
            state.waiting.remove(at: index)
            return true
        }
    }

    /// Records a new snapshot's view of the profile; returns, in arrival order, the work nothing holds
    /// any more. The rest stays parked in its order.
    func published(generation: UInt64, conditions: HoldConditions) -> [Held] {
        state.withLock { state in
            state.generation = generation
            state.conditions = conditions
            var released: [Held] = []
            var kept: [Held] = []
            for held in state.waiting {
                if conditions.holds(held.work) { kept.append(held) } else { released.append(held) }
            }
            state.waiting = kept
            return released
        }
    }

    var count: Int { state.withLock { $0.waiting.count } }

    /// How much parked work a `resume` would let go, the other conditions staying as last published
    /// (writes under `readonly hold` stay): what the resume's answer and event count.
    func releasableByResume() -> Int {
        state.withLock { state in
            var conditions = state.conditions
            conditions.paused = false
            return state.waiting.filter { !conditions.holds($0.work) }.count
        }
    }
}
