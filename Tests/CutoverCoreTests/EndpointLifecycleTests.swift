import CutoverCore
import XCTest

/// Every (state, event) pair of an endpoint's admin lifecycle, with the exact effects.
final class EndpointLifecycleTests: XCTestCase {
    typealias L = EndpointLifecycle
    let timeout = Duration.seconds(30)
    /// The drain in progress in the draining states: started at 1 s, deadline at 31 s.
    let drain = L.EndpointDrain(started: MonotonicInstant(milliseconds: 1_000), deadline: MonotonicInstant(milliseconds: 31_000))
    /// When events happen, unless a test says otherwise: 500 ms into the drain.
    let now = MonotonicInstant(milliseconds: 1_500)

    private func at(_ ms: UInt64) -> MonotonicInstant { MonotonicInstant(milliseconds: ms) }

    private func assertTransition(
        _ state: L, _ event: L.Event, at time: MonotonicInstant? = nil, _ expected: L, _ effects: [L.Effect],
        file: StaticString = #filePath, line: UInt = #line
    ) {
        let (next, actual) = state.transition(on: event, now: time ?? now, drainTimeout: timeout)
        XCTAssertEqual(next, expected, "\(state) on \(event)", file: file, line: line)
        XCTAssertEqual(actual, effects, "\(state) on \(event)", file: file, line: line)
    }

    // MARK: - online

    func testOnline_everyEvent() {
        let started = L.EndpointDrain(started: now, deadline: at(31_500))
        assertTransition(.online, .switchedTo(cause: "switch"), .online, [])
        assertTransition(.online, .switchedAway(inFlight: 3), .draining(started), [
            .recordEvent(state: "draining", cause: "3 in flight, deadline 30s"), .armDrainDeadline(at(31_500)),
        ])
        assertTransition(.online, .setOnline, .online, [])
        assertTransition(.online, .setOffline, .offline, [])
        assertTransition(.online, .drainRequested(inFlight: 0), .draining(started), [
            .recordEvent(state: "draining", cause: "0 in flight, deadline 30s"), .armDrainDeadline(at(31_500)),
        ])
        // Reports about a drain that no longer runs change nothing and record nothing.
        assertTransition(.online, .drainEmptied, .online, [])
        assertTransition(.online, .drainDeadlinePassed, at: at(40_000), .online, [])
        assertTransition(.online, .tunnelsClosed(count: 2), .online, [])
    }

    // MARK: - offline

    func testOffline_everyEvent() {
        assertTransition(.offline, .switchedTo(cause: "switch --force"), .online, [])
        assertTransition(.offline, .switchedAway(inFlight: 1), .offline, [])
        assertTransition(.offline, .setOnline, .online, [])
        assertTransition(.offline, .setOffline, .offline, [])
        assertTransition(.offline, .drainRequested(inFlight: 1), .offline, [])
        assertTransition(.offline, .drainEmptied, .offline, [])
        assertTransition(.offline, .drainDeadlinePassed, at: at(40_000), .offline, [])
        assertTransition(.offline, .tunnelsClosed(count: 1), .offline, [])
    }

    // MARK: - draining

    func testDraining_everyEvent() {
        let cancelled = DrainOutcome.cancelled(after: .milliseconds(500), by: "switch")
        assertTransition(.draining(drain), .switchedTo(cause: "switch"), .online, [
            .disarmDrainDeadline, .recordEvent(state: "online", cause: "switch, drain cancelled after 500ms"), .drainEnded(cancelled),
        ])
        // A second switch away keeps the first deadline.
        assertTransition(.draining(drain), .switchedAway(inFlight: 4), .draining(drain), [])
        assertTransition(.draining(drain), .setOnline, .online, [
            .disarmDrainDeadline, .drainEnded(.cancelled(after: .milliseconds(500), by: "set endpoint online")),
        ])
        assertTransition(.draining(drain), .setOffline, .offline, [
            .disarmDrainDeadline, .drainEnded(.cancelled(after: .milliseconds(500), by: "set endpoint offline")),
        ])
        assertTransition(.draining(drain), .drainRequested(inFlight: 2), .draining(drain), [])
        assertTransition(.draining(drain), .drainEmptied, .offline, [
            .disarmDrainDeadline, .recordEvent(state: "offline", cause: "drained after 500ms"), .drainEnded(.emptied(after: .milliseconds(500))),
        ])
        assertTransition(.draining(drain), .drainDeadlinePassed, at: at(31_000), .closingTunnels(drain), [.closeTunnels])
        assertTransition(.draining(drain), .tunnelsClosed(count: 1), .draining(drain), [])
    }

    func testDraining_deadlineReportedEarly_isIgnored() {
        assertTransition(.draining(drain), .drainDeadlinePassed, at: at(30_999), .draining(drain), [])
    }

    // MARK: - closingTunnels

    func testClosingTunnels_everyEvent() {
        let late = at(31_050)
        assertTransition(.closingTunnels(drain), .switchedTo(cause: "switch"), at: late, .online, [
            .disarmDrainDeadline, .recordEvent(state: "online", cause: "switch, drain cancelled after 30050ms"),
            .drainEnded(.cancelled(after: .milliseconds(30_050), by: "switch")),
        ])
        assertTransition(.closingTunnels(drain), .switchedAway(inFlight: 1), at: late, .closingTunnels(drain), [])
        assertTransition(.closingTunnels(drain), .setOnline, at: late, .online, [
            .disarmDrainDeadline, .drainEnded(.cancelled(after: .milliseconds(30_050), by: "set endpoint online")),
        ])
        assertTransition(.closingTunnels(drain), .setOffline, at: late, .offline, [
            .disarmDrainDeadline, .drainEnded(.cancelled(after: .milliseconds(30_050), by: "set endpoint offline")),
        ])
        assertTransition(.closingTunnels(drain), .drainRequested(inFlight: 1), at: late, .closingTunnels(drain), [])
        assertTransition(.closingTunnels(drain), .drainEmptied, at: late, .offline, [
            .disarmDrainDeadline, .recordEvent(state: "offline", cause: "drained after 30050ms"), .drainEnded(.emptied(after: .milliseconds(30_050))),
        ])
        assertTransition(.closingTunnels(drain), .drainDeadlinePassed, at: late, .closingTunnels(drain), [])
        assertTransition(.closingTunnels(drain), .tunnelsClosed(count: 2), at: late, .offline, [
            .disarmDrainDeadline, .recordEvent(state: "offline", cause: "drain deadline after 30050ms: 2 force-closed"),
            .drainEnded(.deadlinePassed(after: .milliseconds(30_050), forceClosed: 2)),
        ])
    }

    // MARK: - Views

    func testAdminState_ofEachLifecycle() {
        XCTAssertEqual(L.online.admin, .online)
        XCTAssertEqual(L.offline.admin, .offline)
        XCTAssertEqual(L.draining(drain).admin, .draining)
        XCTAssertEqual(L.closingTunnels(drain).admin, .draining)
    }

    func testRestoredDraining_withoutItsDrain_drainsFromNow() {
        XCTAssertEqual(L(admin: .draining, drain: nil, now: now, drainTimeout: timeout), .draining(L.EndpointDrain(started: now, deadline: at(31_500))))
        XCTAssertEqual(L(admin: .draining, drain: drain, now: now, drainTimeout: timeout), .draining(drain))
        XCTAssertEqual(L(admin: .online, drain: drain, now: now, drainTimeout: timeout), .online)
        XCTAssertEqual(L(admin: .offline, drain: nil, now: now, drainTimeout: timeout), .offline)
    }

    func testDrainOutcome_words() {
        XCTAssertEqual(DrainOutcome.emptied(after: .milliseconds(50)).description, "drained after 50ms")
        XCTAssertEqual(DrainOutcome.deadlinePassed(after: .seconds(10), forceClosed: 3).description, "drain deadline after 10s: 3 force-closed")
        XCTAssertEqual(DrainOutcome.cancelled(after: .milliseconds(2700), by: "switch").description, "drain cancelled after 2700ms")
    }
}
