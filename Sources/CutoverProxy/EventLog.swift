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
    let capacity: Int

    init(capacity: Int = 500) {
        self.capacity = capacity
    }

    func record(profile: String, endpoint: String?, state: String, cause: String) {
        let event = RuntimeEvent(time: Date(), profile: profile, endpoint: endpoint, state: state, cause: cause)
        Log.info("event \(event.endpoint.map { "\(profile)/\($0)" } ?? profile) \(state) (\(cause))")
        ring.withLock { events in
            events.append(event)
            if events.count > capacity { events.removeFirst(events.count - capacity) }
        }
    }

    /// The most recent `count` events, oldest first.
    func last(_ count: Int) -> [RuntimeEvent] {
        ring.withLock { Array($0.suffix(count)) }
    }
}
