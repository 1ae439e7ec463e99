import Synchronization

/// Requests and connections of one profile waiting for a resume or for an endpoint to come back.
///
/// The queue, not the snapshot, decides whether to hold: a request that read a paused snapshot just
/// before `resume` would otherwise be parked after the release and wait for its timeout.
final class HoldQueue: Sendable {
    /// A parked piece of work; `release` re-routes it on its own queue.
    struct Held: Sendable {
        let id: UInt64
        let release: @Sendable () -> Void
    }

    /// What `hold` decided.
    enum Outcome: Equatable {
        case held(id: UInt64)
        /// `max_held` reached: answer 503 with Retry-After.
        case full
        /// The world changed since the caller read its snapshot: route again.
        case routeAgain
    }

    private struct State {
        var generation: UInt64 = 0
        var paused = false
        var available = true
        var holdWhenUnavailable = false
        var nextID: UInt64 = 1
        var waiting: [Held] = []
    }

    private let state = Mutex(State())

    /// Parks work seen unroutable in snapshot `generation`, if the queue still holds at that generation.
    func hold(seenGeneration generation: UInt64, maxHeld: Int, release: @escaping @Sendable () -> Void) -> Outcome {
        state.withLock { state in
            guard state.generation == generation, state.paused || (!state.available && state.holdWhenUnavailable) else {
                return .routeAgain
            }
            guard state.waiting.count < maxHeld else { return .full }
            let id = state.nextID
            state.nextID += 1
            state.waiting.append(Held(id: id, release: release))
            return .held(id: id)
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

    /// Records a new snapshot's view of the profile; returns, in arrival order, the work to release.
    func published(generation: UInt64, paused: Bool, available: Bool, holdWhenUnavailable: Bool) -> [Held] {
        state.withLock { state in
            state.generation = generation
            state.paused = paused
            state.available = available
            state.holdWhenUnavailable = holdWhenUnavailable
            guard !paused, available || !holdWhenUnavailable else { return [] }
            defer { state.waiting = [] }
            return state.waiting
        }
    }

    var count: Int { state.withLock { $0.waiting.count } }
}
