import CutoverCore
import XCTest

/// The admin answers' JSON: one flat object, snake_case keys, sorted; decoded back by the same types.
final class AdminAnswerTests: XCTestCase {
    func testSwitchAnswer_isOneFlatSnakeCaseObject() throws {
        let answer = AdminAnswer(message: "switched web to green", data: SwitchAnswer(profile: "web", endpoint: "green", draining: ["blue"], drains: ["web/blue": "drained"]))
        XCTAssertEqual(
            JSONCoding.line(answer),
            #"{"draining":["blue"],"drains":{"web/blue":"drained"},"endpoint":"green","message":"switched web to green","ok":true,"profile":"web"}"#)
        let back = try JSONCoding.decode(AdminAnswer<SwitchAnswer>.self, from: JSONCoding.line(answer))
        XCTAssertEqual(back.data, answer.data)
        XCTAssertEqual(back.message, "switched web to green")
    }

    func testRefusal_decodesAsAnyAnswerWithoutData() throws {
        let line = JSONCoding.line(AdminAnswer(AdminError(.unknownProfile, "no profile named \"x\"")))
        XCTAssertEqual(line, #"{"code":"unknown-profile","message":"no profile named \"x\"","ok":false}"#)
        let back = try JSONCoding.decode(AdminAnswer<ProfilesAnswer>.self, from: line)
        XCTAssertFalse(back.ok)
        XCTAssertEqual(back.code, "unknown-profile")
        XCTAssertNil(back.data)
    }

    func testEndpointStatus_keysAreSnakeCase_namesAreKeptAsWritten() throws {
        let status = EndpointStatus(profile: "web", name: "Blue_1", address: "127.0.0.1:1", state: "online", health: "up", priority: 1, weight: 1, live: true, inFlight: 2, connections: 3)
        let line = JSONCoding.line(AdminAnswer(data: EndpointsAnswer(endpoints: [status])))
        XCTAssertTrue(line.contains(#""in_flight":2"#), line)
        XCTAssertTrue(line.contains(#""name":"Blue_1""#), line)
        let gates = JSONCoding.line(AdminAnswer(data: ProfilesAnswer(profiles: [ProfileStatus(name: "web", live: [], paused: false, maintenance: true, readonly: .hold, held: 0, endpoints: 2, inFlight: 3, writesInFlight: 1)])))
        XCTAssertTrue(gates.contains(#""readonly":true"#), gates)
        XCTAssertTrue(gates.contains(#""readonly_gate":"hold""#), gates)
        XCTAssertTrue(gates.contains(#""writes_in_flight":1"#), gates)
        let back = try JSONCoding.decode(AdminAnswer<EndpointsAnswer>.self, from: line)
        XCTAssertEqual(back.data?.endpoint(named: "Blue_1"), status)
    }

    func testStats_keysAreSnakeCase() {
        let stats = StatsAnswer(uptimeSeconds: 1, connectionsOpen: 2, connectionsAccepted: 3, connectionsRefused: 4, requests: 5, proxyAnswered: 6, heldNow: 7, heldTotal: 8, holdTimeouts: 9, switches: 10, tunnels: 11, snapshotGeneration: 12, workers: 13)
        let line = JSONCoding.line(AdminAnswer(data: stats))
        for key in ["uptime_seconds", "connections_open", "connections_accepted", "proxy_answered", "held_now", "hold_timeouts", "snapshot_generation"] {
            XCTAssertTrue(line.contains("\"\(key)\":"), "\(key) missing in \(line)")
        }
    }

    /// Defect 7: an error that quotes the request never carries its control bytes (an ESC sequence,
    /// a C1 CSI, a newline that would end the answer) to the operator's terminal.
    func testErrorQuotingControlBytes_escapesThem() {
        XCTAssertThrowsError(try AdminCommand.parse("show \u{1b}[2J\u{1b}]0;owned\u{07}")) { error in
            let text = "\(error)"
            XCTAssertFalse(text.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }, text)
            XCTAssertTrue(text.contains(#"\x1b[2J\x1b]0;owned\x07"#), text)
        }
        XCTAssertEqual(AdminError(.badArguments, "a\u{9b}b\nc\u{7f}").message, #"a\u{9b}b\x0ac\x7f"#)
        XCTAssertEqual(AdminError(.badArguments, "grün ✓").message, "grün ✓", "printable text is left alone")
    }
}
