import CutoverCore
import XCTest

/// Issue 12: the guard window as a value, and the figures it judges, without sockets or clocks.
final class GuardWindowTests: XCTestCase {
    private func at(_ ms: UInt64) -> MonotonicInstant { MonotonicInstant(milliseconds: ms) }
    private let thresholds = GuardConfig(max5xxRatio: 0.05, minRequests: 20, maxConnectFailures: 2, maxP99: .milliseconds(100))

    private func opened() -> GuardWindow {
        let (window, effects) = GuardWindow.idle.transition(
            on: .switchedWithGuard(live: "green", standby: ["blue"], duration: .seconds(10), thresholds: thresholds, standbyP99: nil), now: at(1_000))
        XCTAssertEqual(effects.last, .persistState)
        XCTAssertTrue(effects.contains(.armTimer(interval: thresholds.interval)))
        return window
    }

    func testBreach_revertsBeforeTheEventAndNamesTheRatio() {
        let (next, effects) = opened().transition(on: .intervalElapsed(GuardFigures(requests: 54, status5xx: 17)), now: at(1_500))
        XCTAssertEqual(effects.first, .disarmTimer)
        XCTAssertEqual(effects[1], .revert(to: "blue", cause: "guard breach"))
        guard case .recordEvent(_, "reverted", let cause) = effects[2] else { return XCTFail("\(effects)") }
        XCTAssertEqual(cause, "guard breach: 5xx ratio 0.31 > 0.05 over 54 requests, reverted to blue")
        guard case .ended(_, .breach(.status5xxRatio, "blue")) = next else { return XCTFail("\(next)") }
    }

    func testFewRequests_areNotJudgedButConnectFailuresAre() {
        let (still, none) = opened().transition(on: .intervalElapsed(GuardFigures(requests: 5, status5xx: 5)), now: at(1_500))
        XCTAssertEqual(none, [])
        XCTAssertNotNil(still.watch)
        let (_, effects) = still.transition(on: .intervalElapsed(GuardFigures(requests: 3, connectFailures: 3)), now: at(2_000))
        XCTAssertTrue(effects.contains(.revert(to: "blue", cause: "guard breach")))
    }

    func testCleanEnd_finishesTheStandbyDrain() {
        let (next, effects) = opened().transition(on: .intervalElapsed(GuardFigures(requests: 500)), now: at(11_000))
        XCTAssertTrue(effects.contains(.finishDrain("blue")))
        XCTAssertFalse(effects.contains { if case .revert = $0 { return true } else { return false } })
        guard case .ended(_, .clean) = next else { return XCTFail("\(next)") }
    }

    func testEndedWindow_neverSwitchesBack() {
        let (ended, _) = opened().transition(on: .intervalElapsed(GuardFigures(requests: 54, status5xx: 17)), now: at(1_500))
        let (after, effects) = ended.transition(on: .intervalElapsed(GuardFigures(requests: 5_000)), now: at(20_000))
        XCTAssertEqual(after, ended)
        XCTAssertEqual(effects, [.disarmTimer])
    }

    func testManualSwitch_endsTheWindow() {
        let (next, effects) = opened().transition(on: .manualSwitch(to: "blue"), now: at(2_000))
        XCTAssertTrue(effects.contains(.finishDrain("blue")))
        guard case .ended(_, .superseded(let by)) = next else { return XCTFail("\(next)") }
        XCTAssertEqual(by, "switch to blue")
    }

    func testP99_breachesOnlyWhenCertainlyAbove() {
        let bounds: [UInt64] = [1, 5, 10, 25, 50, 100, 250, 500]
        let start = GuardSample(answers: 0, status5xx: 0, connectFailures: 0, boundsMilliseconds: bounds, cumulativeLatency: Array(repeating: 0, count: 8), timed: 0)
        // 100 answers, all between 250 and 500 ms.
        let slow = GuardSample(answers: 100, status5xx: 0, connectFailures: 0, boundsMilliseconds: bounds, cumulativeLatency: [0, 0, 0, 0, 0, 0, 0, 100], timed: 100)
        let figures = GuardFigures(from: start, to: slow)
        XCTAssertEqual(figures.p99, GuardFigures.P99(lower: .milliseconds(250), upper: .milliseconds(500)))
        XCTAssertEqual(figures.breach(of: thresholds, standbyP99: nil)?.threshold, "max_p99")
        // All between 50 and 100 ms: the p99 may be under 100 ms, no breach.
        let fine = GuardSample(answers: 100, status5xx: 0, connectFailures: 0, boundsMilliseconds: bounds, cumulativeLatency: [0, 0, 0, 0, 0, 100, 100, 100], timed: 100)
        XCTAssertNil(GuardFigures(from: start, to: fine).breach(of: thresholds, standbyP99: nil))
    }
}
