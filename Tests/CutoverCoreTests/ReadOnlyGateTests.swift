import CutoverCore
import XCTest

/// `readonly PROFILE on|off|hold`: the grammar, the gate's verdict per method, and the hold rule that
/// decides both when work is parked and when it may leave the queue.
final class ReadOnlyGateTests: XCTestCase {
    // MARK: - Grammar

    func testReadonly_parsesOnOffHold() throws {
        XCTAssertEqual(try AdminCommand.parse("readonly web on").command, .readOnly(profile: "web", gate: .on))
        XCTAssertEqual(try AdminCommand.parse("readonly web off").command, .readOnly(profile: "web", gate: .off))
        XCTAssertEqual(try AdminCommand.parse("readonly web hold").command, .readOnly(profile: "web", gate: .hold))
        let json = try AdminCommand.parse("readonly web hold --json")
        XCTAssertEqual(json.command, .readOnly(profile: "web", gate: .hold))
        XCTAssertTrue(json.json)
        XCTAssertTrue(AdminCommand.readOnly(profile: "web", gate: .hold).isMutation)
    }

    func testReadonly_badArguments_nameTheThreePositions() {
        for line in ["readonly web", "readonly web HOLD", "readonly web pause", "readonly web on now", "readonly"] {
            XCTAssertThrowsError(try AdminCommand.parse(line), line) { error in
                XCTAssertEqual(error as? AdminError, AdminError(.badArguments, "usage: readonly PROFILE on|off|hold"), line)
            }
        }
    }

    func testMaintenance_stillTakesOnlyOnOff() throws {
        XCTAssertEqual(try AdminCommand.parse("maintenance web on").command, .maintenance(profile: "web", on: true))
        XCTAssertThrowsError(try AdminCommand.parse("maintenance web hold")) { error in
            XCTAssertEqual(error as? AdminError, AdminError(.badArguments, "usage: maintenance PROFILE on|off"))
        }
    }

    func testUsage_namesHoldAndWhatOnDoesToHeldWrites() {
        XCTAssertTrue(AdminCommand.usage.contains("readonly PROFILE on|off|hold"), AdminCommand.usage)
        XCTAssertTrue(AdminCommand.usage.contains("hold → on answers the waiting ones 503"), AdminCommand.usage)
    }

    // MARK: - Verdict per method

    func testVerdict_everyGateAndMethodClass() {
        let unsafe = ["POST", "PUT", "PATCH", "DELETE", "PROPFIND", "get"]
        for method in ["GET", "HEAD", "OPTIONS"] {
            for gate in ReadOnlyGate.allCases { XCTAssertEqual(gate.verdict(method: method), .pass, "\(gate) \(method)") }
        }
        for method in unsafe {
            XCTAssertEqual(ReadOnlyGate.off.verdict(method: method), .pass, method)
            XCTAssertEqual(ReadOnlyGate.on.verdict(method: method), .refuse, method)
            XCTAssertEqual(ReadOnlyGate.hold.verdict(method: method), .hold, method)
        }
    }

    func testIsClosed_isTrueForOnAndHold() {
        XCTAssertEqual(ReadOnlyGate.allCases.map(\.isClosed), [false, true, true])
    }

    // MARK: - The hold rule

    func testWriteHold_holdsOnlyUnsafeRequests_neverTCP() {
        let conditions = HoldConditions(writesHeld: true)
        XCTAssertEqual(conditions.reason(for: .unsafeRequest), .writesHeld)
        XCTAssertNil(conditions.reason(for: .safeRequest))
        XCTAssertNil(conditions.reason(for: .connection))
    }

    func testPause_holdsEverything() {
        let conditions = HoldConditions(paused: true)
        for work in [HoldConditions.Work.safeRequest, .unsafeRequest, .connection] {
            XCTAssertEqual(conditions.reason(for: work), .paused, "\(work)")
        }
    }

    func testUnavailable_holdsEverything() {
        let conditions = HoldConditions(unavailable: true)
        for work in [HoldConditions.Work.safeRequest, .unsafeRequest, .connection] {
            XCTAssertEqual(conditions.reason(for: work), .unavailable, "\(work)")
        }
    }

    func testNothingSet_holdsNothing() {
        for work in [HoldConditions.Work.safeRequest, .unsafeRequest, .connection] {
            XCTAssertFalse(HoldConditions().holds(work), "\(work)")
        }
    }

    /// Resume while the gate still holds: a write stays; the gate opening while paused: it stays too.
    /// Every combination of the three conditions, for an unsafe request.
    func testUnsafeRequest_isReleasedOnlyWhenNothingHoldsIt() {
        for paused in [false, true] {
            for writesHeld in [false, true] {
                for unavailable in [false, true] {
                    let conditions = HoldConditions(paused: paused, writesHeld: writesHeld, unavailable: unavailable)
                    XCTAssertEqual(conditions.holds(.unsafeRequest), paused || writesHeld || unavailable, "\(conditions)")
                    XCTAssertEqual(conditions.holds(.safeRequest), paused || unavailable, "\(conditions)")
                }
            }
        }
        XCTAssertEqual(HoldConditions(paused: true, writesHeld: true).reason(for: .unsafeRequest), .paused)
        XCTAssertEqual(HoldConditions(writesHeld: true, unavailable: true).reason(for: .unsafeRequest), .writesHeld)
    }

    func testConditionsFromSnapshotView() {
        XCTAssertEqual(
            HoldConditions(paused: false, readOnly: .hold, hasCandidates: true, holdWhenUnavailable: false),
            HoldConditions(writesHeld: true))
        XCTAssertEqual(
            HoldConditions(paused: false, readOnly: .on, hasCandidates: true, holdWhenUnavailable: true),
            HoldConditions())
        XCTAssertEqual(
            HoldConditions(paused: true, readOnly: .off, hasCandidates: false, holdWhenUnavailable: true),
            HoldConditions(paused: true, unavailable: true))
        XCTAssertEqual(
            HoldConditions(paused: false, readOnly: .off, hasCandidates: false, holdWhenUnavailable: false),
            HoldConditions())
    }

    func testWorkKind_fromMethod() {
        XCTAssertEqual(HoldConditions.Work(method: "GET"), .safeRequest)
        XCTAssertEqual(HoldConditions.Work(method: "OPTIONS"), .safeRequest)
        XCTAssertEqual(HoldConditions.Work(method: "POST"), .unsafeRequest)
        XCTAssertEqual(HoldConditions.Work(method: "DELETE"), .unsafeRequest)
    }

    // MARK: - Runtime state

    func testReload_keepsTheGatePosition() throws {
        let config = try ConfigLoader.parse(#"""
            { "listeners": [{ "name": "web", "address": "127.0.0.1:0", "profile": "web" }],
              "profiles": [{ "name": "web", "endpoints": [{ "name": "blue", "address": "127.0.0.1:1" }] }] }
            """#, file: "test.json")
        var state = RuntimeState(config: config)
        XCTAssertEqual(state.profiles["web"]?.readOnly, .off)
        state.profiles["web"]?.readOnly = .hold
        XCTAssertEqual(state.reconciled(with: config).profiles["web"]?.readOnly, .hold)
    }
}
