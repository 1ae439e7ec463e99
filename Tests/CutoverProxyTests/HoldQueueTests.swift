@testable import CutoverProxy
import CutoverCore
import Synchronization
import XCTest

/// The hold queue releases, in arrival order, exactly the work that nothing holds any more; the rest
/// keeps its place. No sockets: the releases are recorded.
final class HoldQueueTests: XCTestCase {
    /// Names of released work, in release order.
    private final class Releases: Sendable {
        let names = Mutex<[String]>([])
    }

    private let released = Releases()

    private func park(_ queue: HoldQueue, _ name: String, _ work: HoldConditions.Work, generation: UInt64, maxHeld: Int = 10) -> HoldQueue.Outcome {
        queue.hold(seenGeneration: generation, work: work, maxHeld: maxHeld) { [released] in
            released.names.withLock { $0.append(name) }
        }
    }

    private func publish(_ queue: HoldQueue, generation: UInt64, _ conditions: HoldConditions) {
        for held in queue.published(generation: generation, conditions: conditions) { held.release() }
    }

    private var releasedNames: [String] { released.names.withLock { $0 } }

    func testResume_keepsWritesTheGateHolds_thenGateOffReleasesThemInOrder() {
        let queue = HoldQueue()
        publish(queue, generation: 1, HoldConditions(paused: true, writesHeld: true))
        XCTAssertEqual(park(queue, "post-1", .unsafeRequest, generation: 1), .held(id: 1, reason: .paused))
        XCTAssertEqual(park(queue, "get-1", .safeRequest, generation: 1), .held(id: 2, reason: .paused))
        XCTAssertEqual(park(queue, "post-2", .unsafeRequest, generation: 1), .held(id: 3, reason: .paused))
        XCTAssertEqual(park(queue, "tcp-1", .connection, generation: 1), .held(id: 4, reason: .paused))

        publish(queue, generation: 2, HoldConditions(writesHeld: true))  // resume
        XCTAssertEqual(releasedNames, ["get-1", "tcp-1"])
        XCTAssertEqual(queue.count, 2)

        publish(queue, generation: 3, HoldConditions())  // readonly off
        XCTAssertEqual(releasedNames, ["get-1", "tcp-1", "post-1", "post-2"])
        XCTAssertEqual(queue.count, 0)
    }

    func testGateOffWhilePaused_keepsEverything_thenResumeReleasesAllInOrder() {
        let queue = HoldQueue()
        publish(queue, generation: 1, HoldConditions(paused: true, writesHeld: true))
        _ = park(queue, "post-1", .unsafeRequest, generation: 1)
        _ = park(queue, "get-1", .safeRequest, generation: 1)
        _ = park(queue, "post-2", .unsafeRequest, generation: 1)
        publish(queue, generation: 2, HoldConditions(paused: true))  // readonly off
        XCTAssertEqual(releasedNames, [])
        publish(queue, generation: 3, HoldConditions())  // resume
        XCTAssertEqual(releasedNames, ["post-1", "get-1", "post-2"])
    }

    func testWriteHold_parksOnlyUnsafeRequests() {
        let queue = HoldQueue()
        publish(queue, generation: 1, HoldConditions(writesHeld: true))
        XCTAssertEqual(park(queue, "post", .unsafeRequest, generation: 1), .held(id: 1, reason: .writesHeld))
        XCTAssertEqual(park(queue, "get", .safeRequest, generation: 1), .routeAgain)
        XCTAssertEqual(park(queue, "tcp", .connection, generation: 1), .routeAgain)
    }

    func testStaleGeneration_routesAgain_andMaxHeldCountsEveryHeldKind() {
        let queue = HoldQueue()
        publish(queue, generation: 1, HoldConditions(paused: true, writesHeld: true))
        XCTAssertEqual(park(queue, "old", .unsafeRequest, generation: 0), .routeAgain)
        XCTAssertEqual(park(queue, "get", .safeRequest, generation: 1, maxHeld: 2), .held(id: 1, reason: .paused))
        XCTAssertEqual(park(queue, "post", .unsafeRequest, generation: 1, maxHeld: 2), .held(id: 2, reason: .paused))
        XCTAssertEqual(park(queue, "post-2", .unsafeRequest, generation: 1, maxHeld: 2), .full(reason: .paused))
    }

    func testCancel_forgetsOneAndKeepsTheOthersInOrder() {
        let queue = HoldQueue()
        publish(queue, generation: 1, HoldConditions(writesHeld: true))
        _ = park(queue, "a", .unsafeRequest, generation: 1)
        _ = park(queue, "b", .unsafeRequest, generation: 1)
        _ = park(queue, "c", .unsafeRequest, generation: 1)
        XCTAssertTrue(queue.cancel(id: 2))
        XCTAssertFalse(queue.cancel(id: 2))
        publish(queue, generation: 2, HoldConditions())
        XCTAssertEqual(releasedNames, ["a", "c"])
    }
}
