import CutoverCore
import XCTest

/// The rise/fall rule: every (state, result) pair, the causes it records, and `adopt`.
final class HealthCounterTests: XCTestCase {
    let ok = ProbeOutcome.httpStatus(200, path: "/healthz", expected: true)
    let bad = ProbeOutcome.httpStatus(500, path: "/healthz", expected: false)

    func testUnknown_goesUpAfterRiseSuccesses() {
        var counter = HealthCounter(rise: 2, fall: 3)
        XCTAssertNil(counter.record(ok))
        XCTAssertEqual(counter.state, .unknown(successes: 1))
        XCTAssertEqual(counter.record(ok), HealthTransition(health: .up, cause: "probe: HTTP 200 on /healthz (2 consecutive successes)"))
        XCTAssertEqual(counter.health, .up)
    }

    func testUnknown_firstFailureIsDownAtOnce() {
        var counter = HealthCounter(rise: 2, fall: 3)
        XCTAssertEqual(counter.record(bad), HealthTransition(health: .down, cause: "probe: HTTP 500 on /healthz (first check)"))
        XCTAssertEqual(counter.state, .down(successes: 0))
    }

    func testUnknown_failureAfterOneSuccessIsStillDown() {
        var counter = HealthCounter(rise: 3, fall: 3)
        XCTAssertNil(counter.record(ok))
        XCTAssertEqual(counter.record(.connectFailed("refused"))?.health, .down)
    }

    func testRiseOne_firstSuccessIsUp_withoutStreakSuffix() {
        var counter = HealthCounter(rise: 1, fall: 1)
        XCTAssertEqual(counter.record(ok), HealthTransition(health: .up, cause: "probe: HTTP 200 on /healthz"))
    }

    func testUp_goesDownAfterFallConsecutiveFailures() {
        var counter = HealthCounter(rise: 2, fall: 3, health: .up)
        XCTAssertNil(counter.record(bad))
        XCTAssertNil(counter.record(bad))
        XCTAssertEqual(counter.state, .up(failures: 2))
        XCTAssertEqual(counter.record(.connectFailed("refused")), HealthTransition(health: .down, cause: "probe: connect refused (3 consecutive failures)"))
    }

    func testUp_successBreaksTheFailureStreak() {
        var counter = HealthCounter(rise: 2, fall: 2, health: .up)
        XCTAssertNil(counter.record(bad))
        XCTAssertNil(counter.record(ok))
        XCTAssertEqual(counter.state, .up(failures: 0))
        XCTAssertNil(counter.record(bad))
        XCTAssertEqual(counter.record(bad)?.health, .down)
    }

    func testDown_needsRiseConsecutiveSuccesses() {
        var counter = HealthCounter(rise: 3, fall: 2, health: .down)
        XCTAssertNil(counter.record(ok))
        XCTAssertNil(counter.record(ok))
        XCTAssertNil(counter.record(bad))  // the streak starts over
        XCTAssertEqual(counter.state, .down(successes: 0))
        XCTAssertNil(counter.record(ok))
        XCTAssertNil(counter.record(ok))
        XCTAssertEqual(counter.record(ok)?.health, .up)
    }

    func testDown_failuresChangeNothing() {
        var counter = HealthCounter(rise: 2, fall: 2, health: .down)
        for _ in 0..<5 { XCTAssertNil(counter.record(bad)) }
        XCTAssertEqual(counter.health, .down)
    }

    func testUp_successesChangeNothing() {
        var counter = HealthCounter(rise: 2, fall: 2, health: .up)
        for _ in 0..<5 { XCTAssertNil(counter.record(ok)) }
        XCTAssertEqual(counter.health, .up)
    }

    func testPassiveDown_isAdopted_andNeedsRiseSuccessesToReturn() {
        var counter = HealthCounter(rise: 2, fall: 3, health: .up)
        XCTAssertNil(counter.record(bad))
        counter.adopt(.down)
        XCTAssertEqual(counter.state, .down(successes: 0))
        XCTAssertNil(counter.record(ok))
        XCTAssertEqual(counter.record(ok)?.health, .up)
    }

    func testAdoptingTheSameHealth_keepsTheStreak() {
        var counter = HealthCounter(rise: 2, fall: 3, health: .up)
        XCTAssertNil(counter.record(bad))
        counter.adopt(.up)
        XCTAssertEqual(counter.state, .up(failures: 1))
    }

    func testCounterFromProbeConfig_usesItsRiseAndFall() {
        let counter = HealthCounter(probe: ProbeConfig(rise: 4, fall: 5))
        XCTAssertEqual(counter.rise, 4)
        XCTAssertEqual(counter.fall, 5)
        XCTAssertEqual(counter.health, .unknown)
    }
}

/// The words of each probe result, as `show events` prints them.
final class ProbeOutcomeTests: XCTestCase {
    func testCausesReadAsOperatorWords() {
        XCTAssertEqual(ProbeOutcome.httpStatus(500, path: "/healthz", expected: false), .failure("probe: HTTP 500 on /healthz"))
        XCTAssertEqual(ProbeOutcome.connectFailed("refused").text, "probe: connect refused")
        XCTAssertEqual(ProbeOutcome.timedOut(after: .seconds(1)).text, "probe: timeout after 1s")
        XCTAssertEqual(ProbeOutcome.timedOut(after: .milliseconds(300), "on /slow").text, "probe: timeout after 300ms on /slow")
        XCTAssertEqual(ProbeOutcome.bodyLacks("ok", path: "/healthz").text, "probe: body lacks \"ok\" on /healthz")
        XCTAssertEqual(ProbeOutcome.commandExited(2), .failure("probe: command exited 2"))
        XCTAssertEqual(ProbeOutcome.commandExited(0), .success("probe: command exited 0"))
        XCTAssertEqual(ProbeOutcome.commandTimedOut(after: .seconds(1)).text, "probe: command timeout after 1s, killed")
        XCTAssertEqual(ProbeOutcome.connected(to: HostPort(host: "::1", port: 5432)).text, "probe: connected to [::1]:5432")
    }
}

/// The HTTP probe: the request it sends and the verdict on answers fed in uneven pieces.
final class HTTPProbeTests: XCTestCase {
    let address = HostPort(host: "127.0.0.1", port: 9001)

    func testRequest_hasHostUserAgentAndClose_andConfiguredHeadersReplaceDefaults() {
        let probe = ProbeConfig(method: "HEAD", path: "/healthz", headers: [HTTPHeaderField(name: "user-agent", value: "lb"), HTTPHeaderField(name: "X-Check", value: "1")])
        let text = String(decoding: HTTPProbe.request(probe, address: address), as: UTF8.self)
        XCTAssertEqual(text, "HEAD /healthz HTTP/1.1\r\nHost: 127.0.0.1:9001\r\nConnection: close\r\nuser-agent: lb\r\nX-Check: 1\r\n\r\n")
    }

    func testRequest_usesTheConfiguredHost() {
        let text = String(decoding: HTTPProbe.request(ProbeConfig(host: "app.example"), address: address), as: UTF8.self)
        XCTAssertTrue(text.contains("\r\nHost: app.example\r\n"), text)
    }

    func testStatusInRange_isSuccess_decidedOnTheHead() {
        let probe = ProbeConfig(path: "/healthz")
        let answer = Array("HTTP/1.1 204 No Content\r\n\r\n".utf8)
        XCTAssertNil(HTTPProbe.evaluate(Array(answer.prefix(10)), probe: probe, closed: false))
        XCTAssertEqual(HTTPProbe.evaluate(answer, probe: probe, closed: false), .success("probe: HTTP 204 on /healthz"))
    }

    func testStatusOutsideRanges_isFailure() {
        let probe = ProbeConfig(path: "/healthz", expectStatus: [200...299, 301...301])
        XCTAssertEqual(HTTPProbe.evaluate(Array("HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n".utf8), probe: probe, closed: false), .failure("probe: HTTP 302 on /healthz"))
        XCTAssertEqual(HTTPProbe.evaluate(Array("HTTP/1.1 301 Moved\r\nContent-Length: 0\r\n\r\n".utf8), probe: probe, closed: false)?.passed, true)
    }

    func testDefaultRange_accepts399_rejects400() {
        let probe = ProbeConfig()
        XCTAssertEqual(HTTPProbe.evaluate(Array("HTTP/1.1 399 X\r\n\r\n".utf8), probe: probe, closed: false)?.passed, true)
        XCTAssertEqual(HTTPProbe.evaluate(Array("HTTP/1.1 400 X\r\n\r\n".utf8), probe: probe, closed: false)?.passed, false)
    }

    func testBodyContains_waitsForTheBody_thenMatches() {
        let probe = ProbeConfig(path: "/healthz", bodyContains: "ok")
        let head = Array("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n".utf8)
        XCTAssertNil(HTTPProbe.evaluate(head + Array("stat".utf8), probe: probe, closed: false))
        XCTAssertEqual(HTTPProbe.evaluate(head + Array("status: o".utf8), probe: probe, closed: false), .failure("probe: body lacks \"ok\" on /healthz"))
        XCTAssertEqual(HTTPProbe.evaluate(head + Array("status ok".utf8), probe: probe, closed: false)?.passed, true)
    }

    func testBodyContains_untilClose_decidesAtClose() {
        let probe = ProbeConfig(path: "/", bodyContains: "ready")
        let answer = Array("HTTP/1.0 200 OK\r\n\r\nnot yet".utf8)
        XCTAssertNil(HTTPProbe.evaluate(answer, probe: probe, closed: false))
        XCTAssertEqual(HTTPProbe.evaluate(answer, probe: probe, closed: true)?.passed, false)
    }

    func testBodyContains_findsTextSplitAcrossChunks() {
        let probe = ProbeConfig(path: "/", bodyContains: "ready")
        let answer = Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nrea\r\n2\r\ndy\r\n0\r\n\r\n".utf8)
        XCTAssertEqual(HTTPProbe.evaluate(answer, probe: probe, closed: true)?.passed, true)
    }

    func testBodyMismatch_onABadStatus_reportsTheStatus() {
        let probe = ProbeConfig(path: "/healthz", bodyContains: "ok")
        XCTAssertEqual(HTTPProbe.evaluate(Array("HTTP/1.1 503 X\r\nContent-Length: 2\r\n\r\nok".utf8), probe: probe, closed: false), .failure("probe: HTTP 503 on /healthz"))
    }

    func testInterim100_isSkipped() {
        let answer = Array("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n".utf8)
        XCTAssertEqual(HTTPProbe.evaluate(answer, probe: ProbeConfig(path: "/h"), closed: false), .failure("probe: HTTP 500 on /h"))
    }

    func testClosedBeforeAHead_isFailure() {
        XCTAssertEqual(HTTPProbe.evaluate(Array("HTTP/1.1 2".utf8), probe: ProbeConfig(path: "/h"), closed: true), .failure("probe: connection closed before an answer on /h"))
        XCTAssertEqual(HTTPProbe.evaluate([], probe: ProbeConfig(path: "/h"), closed: true, reset: true), .failure("probe: connection reset before an answer on /h"))
    }

    func testGarbage_isABadAnswer() {
        let outcome = HTTPProbe.evaluate(Array("SSH-2.0-OpenSSH\r\n\r\n".utf8), probe: ProbeConfig(path: "/h"), closed: false)
        XCTAssertEqual(outcome?.passed, false)
        XCTAssertTrue(outcome?.text.hasPrefix("probe: bad answer on /h: ") ?? false, outcome?.text ?? "nil")
    }
}
