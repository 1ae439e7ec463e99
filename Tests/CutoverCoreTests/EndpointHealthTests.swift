import CutoverCore
import XCTest

/// Every (state, event) pair of an endpoint's health: probe results through the rise/fall counter,
/// passive failures and successes, probes starting and stopping.
final class EndpointHealthTests: XCTestCase {
    typealias H = EndpointHealth

    /// A health value in `state` (probed with rise 2 / fall 3 unless `unprobed`), after `events`.
    private func health(_ start: Health, probed: Bool = true) -> H {
        var health = H(health: start)
        if probed { XCTAssertEqual(health.transition(on: .probeStarted(rise: 2, fall: 3)), []) }
        return health
    }

    private let refused = H.Event.passiveFailureSeen(.connectionFailure, cause: "connect refused", threshold: 2)

    // MARK: - unprobed

    func testUnprobed_everyEvent() {
        var h = health(.up, probed: false)
        XCTAssertEqual(h.transition(on: .probeStopped), [])
        XCTAssertEqual(h.transition(on: .probeSucceeded("probe: HTTP 200 on /")), [])
        XCTAssertEqual(h.transition(on: .probeFailed("probe: connect refused")), [])
        // Without a probe nothing would bring it back: passive failures never mark it down.
        XCTAssertEqual(h.transition(on: refused), [])
        XCTAssertEqual(h.transition(on: refused), [])
        XCTAssertEqual(h.transition(on: refused), [])
        XCTAssertEqual(h.state, .unprobed(.up))
        XCTAssertEqual(h.passiveStreaks, [:])
        XCTAssertEqual(h.transition(on: .passiveSuccessSeen(.answered)), [.clearPassiveMark])
        XCTAssertEqual(h.transition(on: .probeStarted(rise: 1, fall: 1)), [])
        XCTAssertEqual(h.state, .probed(HealthCounter(rise: 1, fall: 1, health: .up)))
    }

    // MARK: - probed

    func testProbed_successesRiseToUp() {
        var h = health(.unknown)
        XCTAssertEqual(h.transition(on: .probeSucceeded("probe: HTTP 200 on /healthz")), [])
        XCTAssertEqual(h.transition(on: .probeSucceeded("probe: HTTP 200 on /healthz")), [
            .clearPassiveMark, .recordEvent(state: "up", cause: "probe: HTTP 200 on /healthz (2 consecutive successes)"), .publishSnapshot,
        ])
        XCTAssertEqual(h.health, .up)
    }

    func testProbed_failuresFallToDown() {
        var h = health(.up)
        XCTAssertEqual(h.transition(on: .probeFailed("probe: HTTP 500 on /healthz")), [])
        XCTAssertEqual(h.transition(on: .probeFailed("probe: HTTP 500 on /healthz")), [])
        XCTAssertEqual(h.transition(on: .probeFailed("probe: HTTP 500 on /healthz")), [
            .recordEvent(state: "down", cause: "probe: HTTP 500 on /healthz (3 consecutive failures)"), .publishSnapshot,
        ])
        XCTAssertEqual(h.health, .down)
    }

    func testProbed_passiveFailures_markDownAtTheThreshold_thenProbesMustRiseAgain() {
        var h = health(.up)
        XCTAssertEqual(h.transition(on: refused), [])
        XCTAssertEqual(h.passiveStreaks, [.connectionFailure: 1])
        XCTAssertEqual(h.transition(on: refused), [
            .recordEvent(state: "down", cause: "passive: 2 consecutive failures, last: connect refused"), .publishSnapshot,
        ])
        XCTAssertEqual(h.state, .probed(HealthCounter(rise: 2, fall: 3, health: .down)))
        // Already down: more failures count but change nothing.
        XCTAssertEqual(h.transition(on: refused), [])
        XCTAssertEqual(h.transition(on: .probeSucceeded("probe: HTTP 200 on /")), [])
        XCTAssertEqual(h.transition(on: .probeSucceeded("probe: HTTP 200 on /")), [
            .clearPassiveMark, .recordEvent(state: "up", cause: "probe: HTTP 200 on / (2 consecutive successes)"), .publishSnapshot,
        ])
        XCTAssertEqual(h.passiveStreaks, [:], "coming back up ends the streaks")
    }

    func testProbed_signalsCountApart_andAZeroThresholdIsOff() {
        var h = health(.up)
        let fiveHundred = H.Event.passiveFailureSeen(.serverError, cause: "HTTP 503 for GET /", threshold: 2)
        XCTAssertEqual(h.transition(on: refused), [])
        XCTAssertEqual(h.transition(on: fiveHundred), [])
        XCTAssertEqual(h.passiveStreaks, [.connectionFailure: 1, .serverError: 1])
        XCTAssertEqual(h.transition(on: .passiveFailureSeen(.serverError, cause: "HTTP 503", threshold: 0)), [])
        XCTAssertEqual(h.passiveStreaks, [.connectionFailure: 1, .serverError: 1])
        XCTAssertEqual(h.transition(on: fiveHundred), [
            .recordEvent(state: "down", cause: "passive: 2 consecutive 5xx answers, last: HTTP 503 for GET /"), .publishSnapshot,
        ])
    }

    func testProbed_aSuccessOnLiveTraffic_endsTheStreak() {
        var h = health(.up)
        XCTAssertEqual(h.transition(on: refused), [])
        XCTAssertEqual(h.transition(on: .passiveSuccessSeen(.answered)), [.clearPassiveMark])
        XCTAssertEqual(h.transition(on: refused), [], "the streak starts again from one")
        XCTAssertEqual(h.health, .up)
    }

    /// A new upstream connection ends a streak of connect failures but not one of 5xx answers: a
    /// backend that accepts and then answers 502 must still be taken out (the HealthTests flake:
    /// a fresh connection between two 5xx reset the streak).
    func testProbed_aConnection_endsOnlyTheConnectFailureStreak() {
        var h = health(.up)
        let fiveHundred = EndpointHealth.Event.passiveFailureSeen(.serverError, cause: "HTTP 500 for GET /", threshold: 2)
        XCTAssertEqual(h.transition(on: refused), [])
        XCTAssertEqual(h.transition(on: fiveHundred), [])
        XCTAssertEqual(h.transition(on: .passiveSuccessSeen(.connected)), [], "the 5xx streak goes on: the mark stays")
        XCTAssertEqual(h.passiveStreaks, [.serverError: 1])
        XCTAssertEqual(h.transition(on: fiveHundred), [
            .recordEvent(state: "down", cause: "passive: 2 consecutive 5xx answers, last: HTTP 500 for GET /"), .publishSnapshot,
        ])
    }

    func testProbed_restart_keepsHealth_resetsTheStreak() {
        var h = health(.up)
        XCTAssertEqual(h.transition(on: .probeFailed("probe: timeout")), [])
        XCTAssertEqual(h.transition(on: .probeStarted(rise: 1, fall: 1)), [])
        XCTAssertEqual(h.state, .probed(HealthCounter(rise: 1, fall: 1, health: .up)))
    }

    func testProbed_stopped_forgetsHealth() {
        var up = health(.up)
        XCTAssertEqual(up.transition(on: refused), [])
        XCTAssertEqual(up.transition(on: .probeStopped), [.recordEvent(state: "unknown", cause: "probe removed from the config"), .publishSnapshot])
        XCTAssertEqual(up.state, .unprobed(.unknown))
        XCTAssertEqual(up.passiveStreaks, [:])
        var unknown = health(.unknown)
        XCTAssertEqual(unknown.transition(on: .probeStopped), [], "nothing to forget")
    }

    func testProbed_firstFailureFromUnknown_isDownAtOnce() {
        var h = health(.unknown)
        XCTAssertEqual(h.transition(on: .probeFailed("probe: connect refused")), [
            .recordEvent(state: "down", cause: "probe: connect refused (first check)"), .publishSnapshot,
        ])
    }
}
