import CutoverCore
import XCTest

/// Switch, `set endpoint`, pause/resume and drain facts on a profile: which endpoints move, what is
/// refused, and the exact effects in order. Time is a parameter; nothing here opens a socket.
final class ProfileControlTests: XCTestCase {
    typealias E = ProfileControl.Effect
    /// blue online and green offline at priority 1, dr (a backup) online at priority 2; drain_timeout 10s.
    let config = ProfileConfig(
        name: "api",
        endpoints: [
            EndpointConfig(name: "blue", address: HostPort(host: "127.0.0.1", port: 9001)),
            EndpointConfig(name: "green", address: HostPort(host: "127.0.0.1", port: 9002), state: .offline),
            EndpointConfig(name: "dr", address: HostPort(host: "127.0.0.1", port: 9003), priority: 2),
        ],
        drainTimeout: .seconds(10))

    private func at(_ ms: UInt64) -> MonotonicInstant { MonotonicInstant(milliseconds: ms) }
    private func drain(from ms: UInt64) -> EndpointLifecycle {
        .draining(EndpointLifecycle.EndpointDrain(started: at(ms), deadline: at(ms + 10_000)))
    }

    /// A control with every endpoint's health `health` (probes configured when `probed`).
    private func control(health: Health = .up, probed: Bool = false) -> ProfileControl {
        var profile = config
        if probed { profile.probe = ProbeConfig(path: "/healthz") }
        var runtime = ProfileRuntime(profile: profile)
        for name in runtime.endpoints.keys { runtime.endpoints[name]?.health = health }
        return ProfileControl(config: profile, runtime: runtime)
    }

    private func admin(_ control: ProfileControl) -> [String: AdminState] {
        control.runtime.endpoints.mapValues(\.admin)
    }

    private func switchTo(_ endpoint: String, force: Bool = false, inFlight: [String: Int] = [:]) -> ProfileControl.Event {
        .switchRequested(endpoint: endpoint, force: force, inFlight: inFlight)
    }

    // MARK: - switch

    func testSwitch_drainsEveryOnlineEndpointOfTheSameOrBetterPriority() throws {
        var control = control()
        let effects = try control.transition(on: switchTo("green", inFlight: ["blue": 2]), now: at(1_000))
        XCTAssertEqual(effects, [
            .recordEvent(endpoint: "blue", state: "draining", cause: "2 in flight, deadline 10s"),
            .armDrainDeadline(endpoint: "blue", deadline: at(11_000)),
            .recordEvent(endpoint: "green", state: "online", cause: "switch"),
            .countSwitch,
            .publishSnapshot(persist: true),
        ])
        XCTAssertEqual(admin(control), ["blue": .draining, "green": .online, "dr": .online])
        XCTAssertEqual(control.drains, ["blue": drain(from: 1_000)])
    }

    func testSwitch_toTheOnlyLiveEndpoint_changesNothingButPublishes() throws {
        var control = control()
        XCTAssertEqual(try control.transition(on: switchTo("blue"), now: at(1_000)), [.publishSnapshot(persist: true)])
        XCTAssertEqual(admin(control), ["blue": .online, "green": .offline, "dr": .online])
    }

    func testSwitch_toAnOnlineCanary_recordsTheSwitchAndDrainsTheRest() throws {
        var control = control()
        _ = try control.transition(on: .endpointSetRequested(endpoint: "green", state: .online, priority: nil, weight: nil, inFlight: 0), now: at(0))
        let effects = try control.transition(on: switchTo("green", force: true), now: at(1_000))
        XCTAssertEqual(effects, [
            .recordEvent(endpoint: "blue", state: "draining", cause: "0 in flight, deadline 10s"),
            .armDrainDeadline(endpoint: "blue", deadline: at(11_000)),
            .recordEvent(endpoint: "green", state: "online", cause: "switch --force"),
            .countSwitch,
            .publishSnapshot(persist: true),
        ])
    }

    func testSwitch_toTheBackup_drainsEveryBetterPriority() throws {
        var control = control()
        _ = try control.transition(on: .endpointSetRequested(endpoint: "green", state: .online, priority: nil, weight: nil, inFlight: 0), now: at(0))
        let effects = try control.transition(on: switchTo("dr"), now: at(1_000))
        XCTAssertEqual(effects, [
            .recordEvent(endpoint: "blue", state: "draining", cause: "0 in flight, deadline 10s"),
            .armDrainDeadline(endpoint: "blue", deadline: at(11_000)),
            .recordEvent(endpoint: "green", state: "draining", cause: "0 in flight, deadline 10s"),
            .armDrainDeadline(endpoint: "green", deadline: at(11_000)),
            .recordEvent(endpoint: "dr", state: "online", cause: "switch"),
            .countSwitch,
            .publishSnapshot(persist: true),
        ])
        XCTAssertEqual(admin(control), ["blue": .draining, "green": .draining, "dr": .online])
    }

    func testSwitch_toTheBest_leavesAWorsePriorityOnline() throws {
        var control = control()
        _ = try control.transition(on: switchTo("green"), now: at(1_000))
        XCTAssertEqual(admin(control)["dr"], .online, "the backup at priority 2 keeps standing by")
    }

    /// Issue 17, defect 1: `switch api green` then `switch api blue` at once. Blue's drain is
    /// cancelled by the second switch; when blue later empties, nothing claims it went offline.
    func testSwitchBackWhileDraining_cancelsTheDrain_andALateEmptyReportRecordsNothing() throws {
        var control = control()
        _ = try control.transition(on: switchTo("green", inFlight: ["blue": 1]), now: at(1_000))
        let back = try control.transition(on: switchTo("blue", inFlight: ["green": 0]), now: at(1_050))
        XCTAssertEqual(back, [
            .disarmDrainDeadline(endpoint: "blue"),
            .recordEvent(endpoint: "blue", state: "online", cause: "switch, drain cancelled after 50ms"),
            .drainEnded(endpoint: "blue", .cancelled(after: .milliseconds(50), by: "switch")),
            .recordEvent(endpoint: "green", state: "draining", cause: "0 in flight, deadline 10s"),
            .armDrainDeadline(endpoint: "green", deadline: at(11_050)),
            .countSwitch,
            .publishSnapshot(persist: true),
        ])
        XCTAssertEqual(admin(control), ["blue": .online, "green": .draining, "dr": .online])
        XCTAssertEqual(try control.transition(on: .drain(endpoint: "blue", .drainEmptied), now: at(3_750)), [])
        XCTAssertEqual(try control.transition(on: .drain(endpoint: "blue", .drainDeadlinePassed), now: at(11_000)), [])
        XCTAssertEqual(try control.transition(on: .drain(endpoint: "green", .drainEmptied), now: at(1_100)), [
            .disarmDrainDeadline(endpoint: "green"),
            .recordEvent(endpoint: "green", state: "offline", cause: "drained after 50ms"),
            .drainEnded(endpoint: "green", .emptied(after: .milliseconds(50))),
            .publishSnapshot(persist: true),
        ])
        XCTAssertEqual(admin(control), ["blue": .online, "green": .offline, "dr": .online])
        XCTAssertEqual(control.drains, [:])
    }

    func testSwitchAgainWhileDraining_keepsTheFirstDeadline() throws {
        var control = control()
        _ = try control.transition(on: switchTo("green"), now: at(1_000))
        _ = try control.transition(on: switchTo("green"), now: at(5_000))
        XCTAssertEqual(control.drains, ["blue": drain(from: 1_000)])
    }

    func testSwitch_refusals() {
        var down = control(health: .down)
        XCTAssertThrowsError(try down.transition(on: switchTo("green"), now: at(0))) { XCTAssertEqual($0 as? ProfileControl.Refusal, .targetDown("green")) }
        var unproven = control(health: .unknown, probed: true)
        XCTAssertThrowsError(try unproven.transition(on: switchTo("green"), now: at(0))) { XCTAssertEqual($0 as? ProfileControl.Refusal, .targetUnproven("green")) }
        var unknown = control()
        XCTAssertThrowsError(try unknown.transition(on: switchTo("gren"), now: at(0))) { XCTAssertEqual($0 as? ProfileControl.Refusal, .unknownEndpoint("gren")) }
        // A refused switch changes nothing.
        XCTAssertEqual(admin(down), ["blue": .online, "green": .offline, "dr": .online])
    }

    func testSwitch_unknownHealthWithoutProbes_andForce_areAllowed() throws {
        var unprobed = control(health: .unknown, probed: false)
        XCTAssertNoThrow(try unprobed.transition(on: switchTo("green"), now: at(0)))
        var forcedDown = control(health: .down, probed: true)
        XCTAssertNoThrow(try forcedDown.transition(on: switchTo("green", force: true), now: at(0)))
        XCTAssertEqual(admin(forcedDown)["green"], .online)
    }

    // MARK: - set endpoint

    func testSetEndpoint_onlineWithPriorityAndWeight() throws {
        var control = control()
        let effects = try control.transition(on: .endpointSetRequested(endpoint: "green", state: .online, priority: 2, weight: 7, inFlight: 0), now: at(0))
        XCTAssertEqual(effects, [.recordEvent(endpoint: "green", state: "online priority 2 weight 7", cause: "set endpoint"), .publishSnapshot(persist: true)])
        XCTAssertEqual(control.runtime.endpoints["green"], EndpointRuntime(admin: .online, health: .up, priority: 2, weight: 7))
    }

    func testSetEndpoint_weightOnly() throws {
        var control = control()
        let effects = try control.transition(on: .endpointSetRequested(endpoint: "blue", state: nil, priority: nil, weight: 0, inFlight: 0), now: at(0))
        XCTAssertEqual(effects, [.recordEvent(endpoint: "blue", state: "weight 0", cause: "set endpoint"), .publishSnapshot(persist: true)])
        XCTAssertEqual(admin(control)["blue"], .online)
    }

    func testSetEndpoint_drainOnline_startsADrain() throws {
        var control = control()
        let effects = try control.transition(on: .endpointSetRequested(endpoint: "blue", state: .drain, priority: nil, weight: nil, inFlight: 4), now: at(2_000))
        XCTAssertEqual(effects, [
            .recordEvent(endpoint: "blue", state: "draining", cause: "4 in flight, deadline 10s"),
            .armDrainDeadline(endpoint: "blue", deadline: at(12_000)),
            .recordEvent(endpoint: "blue", state: "draining", cause: "set endpoint"),
            .publishSnapshot(persist: true),
        ])
        XCTAssertEqual(control.drains, ["blue": drain(from: 2_000)])
    }

    func testSetEndpoint_drainOffline_saysThereIsNothingToDrain() throws {
        var control = control()
        let effects = try control.transition(on: .endpointSetRequested(endpoint: "green", state: .drain, priority: nil, weight: nil, inFlight: 0), now: at(0))
        XCTAssertEqual(effects, [.recordEvent(endpoint: "green", state: "offline (nothing to drain)", cause: "set endpoint"), .publishSnapshot(persist: true)])
        XCTAssertEqual(admin(control)["green"], .offline)
    }

    func testSetEndpoint_offlineWhileDraining_cancelsTheDrain() throws {
        var control = control()
        _ = try control.transition(on: switchTo("green"), now: at(1_000))
        let effects = try control.transition(on: .endpointSetRequested(endpoint: "blue", state: .offline, priority: nil, weight: nil, inFlight: 1), now: at(1_200))
        XCTAssertEqual(effects, [
            .disarmDrainDeadline(endpoint: "blue"),
            .drainEnded(endpoint: "blue", .cancelled(after: .milliseconds(200), by: "set endpoint offline")),
            .recordEvent(endpoint: "blue", state: "offline", cause: "set endpoint"),
            .publishSnapshot(persist: true),
        ])
        XCTAssertEqual(control.drains, [:])
        XCTAssertEqual(try control.transition(on: .drain(endpoint: "blue", .drainEmptied), now: at(1_300)), [])
    }

    func testSetEndpoint_unknownEndpoint_isRefused() {
        var control = control()
        XCTAssertThrowsError(try control.transition(on: .endpointSetRequested(endpoint: "x", state: .online, priority: nil, weight: nil, inFlight: 0), now: at(0))) {
            XCTAssertEqual($0 as? ProfileControl.Refusal, .unknownEndpoint("x"))
        }
    }

    // MARK: - pause and resume (both states, both events)

    func testPauseAndResume_everyPair() throws {
        var control = control()
        XCTAssertEqual(try control.transition(on: .resumeRequested(releasing: 0, keeping: 0), now: at(0)), [])
        XCTAssertFalse(control.runtime.paused)
        XCTAssertEqual(try control.transition(on: .pauseRequested, now: at(0)), [.recordEvent(endpoint: nil, state: "paused", cause: "pause"), .publishSnapshot(persist: true)])
        XCTAssertTrue(control.runtime.paused)
        XCTAssertEqual(try control.transition(on: .pauseRequested, now: at(0)), [])
        XCTAssertEqual(try control.transition(on: .resumeRequested(releasing: 12, keeping: 0), now: at(0)), [
            .recordEvent(endpoint: nil, state: "resumed", cause: "resume, 12 held released"), .publishSnapshot(persist: true),
        ])
        try control.transition(on: .pauseRequested, now: at(0))
        XCTAssertEqual(try control.transition(on: .resumeRequested(releasing: 3, keeping: 2), now: at(0)), [
            .recordEvent(endpoint: nil, state: "resumed", cause: "resume, 3 held released, 2 still held"), .publishSnapshot(persist: true),
        ])
        XCTAssertFalse(control.runtime.paused)
    }

    // MARK: - drain facts

    func testDrainDeadline_closesTunnelsThenGoesOffline() throws {
        var control = control()
        _ = try control.transition(on: switchTo("green", inFlight: ["blue": 3]), now: at(1_000))
        XCTAssertEqual(try control.transition(on: .drain(endpoint: "blue", .drainDeadlinePassed), now: at(10_999)), [])
        // Closing is still draining for routing: nothing to publish yet.
        XCTAssertEqual(try control.transition(on: .drain(endpoint: "blue", .drainDeadlinePassed), now: at(11_000)), [.closeTunnels(endpoint: "blue")])
        XCTAssertEqual(admin(control)["blue"], .draining)
        XCTAssertEqual(try control.transition(on: .drain(endpoint: "blue", .tunnelsClosed(count: 3)), now: at(11_010)), [
            .disarmDrainDeadline(endpoint: "blue"),
            .recordEvent(endpoint: "blue", state: "offline", cause: "drain deadline after 10010ms: 3 force-closed"),
            .drainEnded(endpoint: "blue", .deadlinePassed(after: .milliseconds(10_010), forceClosed: 3)),
            .publishSnapshot(persist: true),
        ])
        XCTAssertEqual(admin(control)["blue"], .offline)
    }

    func testDrainFact_aboutAnEndpointTheProfileNoLongerHas_isIgnored() throws {
        var control = control()
        XCTAssertEqual(try control.transition(on: .drain(endpoint: "gone", .drainEmptied), now: at(0)), [])
    }

    func testRestoredDrainingEndpoint_drainsFromTheFirstEvent() throws {
        var runtime = ProfileRuntime(profile: config)
        runtime.endpoints["blue"]?.admin = .draining
        var control = ProfileControl(config: config, runtime: runtime)
        XCTAssertEqual(control.lifecycle(of: "blue", now: at(500)), drain(from: 500))
        XCTAssertEqual(try control.transition(on: .drain(endpoint: "blue", .drainEmptied), now: at(700)), [
            .disarmDrainDeadline(endpoint: "blue"),
            .recordEvent(endpoint: "blue", state: "offline", cause: "drained after 0s"),
            .drainEnded(endpoint: "blue", .emptied(after: .zero)),
            .publishSnapshot(persist: true),
        ])
    }
}
