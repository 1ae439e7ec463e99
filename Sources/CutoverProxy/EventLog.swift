import CutoverCore
import Foundation
import Synchronization

/// One state or health change, with its cause, as `show events` prints it.
struct RuntimeEvent: Sendable {
    let time: Date
    let profile: String
    /// The endpoint concerned, or `nil` for profile-wide changes (pause, gates).
    let endpoint: String?
    /// The new state, in the operator's words (`draining`, `down`, `paused`, `maintenance on`).
    let state: String
    let cause: String

    var line: String {
        "\(Timestamp.format(time)) \(endpoint.map { "\(profile)/\($0)" } ?? profile) \(state) (\(cause))"
    }

    /// The JSON form, for `show events` and `last_change`.
    var record: EventRecord {
        EventRecord(time: Timestamp.format(time), profile: profile, endpoint: endpoint, state: state, cause: cause)
    }
}

/// The last few hundred events, in memory, each also written to the log.
final class EventLog: Sendable {
    private let ring = Mutex<[RuntimeEvent]>([])
    /// How many events were ever recorded, so a follower can ask for the ones after those it saw.
    private let recorded = Mutex(0)
    let capacity: Int

    init(capacity: Int = 500) {
        self.capacity = capacity
    }

    func record(profile: String, endpoint: String?, state: String, cause: String) {
        let event = RuntimeEvent(time: Date(), profile: profile, endpoint: endpoint, state: state, cause: cause)
        Log.info("event \(event.endpoint.map { "\(profile)/\($0)" } ?? profile) \(state) (\(cause))")
        recorded.withLock { total in
            ring.withLock { events in
                events.append(event)
                if events.count > capacity { events.removeFirst(events.count - capacity) }
            }
            total += 1
        }
    }

    /// How many events were recorded so far: the position a new follower starts from.
    var total: Int { recorded.withLock { $0 } }

    /// The events recorded after the first `seen` ones (those still in the ring), and the new position.
    func since(_ seen: Int) -> (events: [RuntimeEvent], total: Int) {
        recorded.withLock { total in
            let events = ring.withLock { Array($0.suffix(min(max(0, total - seen), $0.count))) }
            return (events, total)
        }
    }

    /// The most recent `count` events, oldest first.
    func last(_ count: Int) -> [RuntimeEvent] {
        ring.withLock { Array($0.suffix(count)) }
    }
}
