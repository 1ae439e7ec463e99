import CutoverCore
import XCTest

/// Whose fault decides the status of every answer the proxy writes itself, in one function.
final class ProxyFaultTests: XCTestCase {
    func testClientFaults_keepTheirParseStatus_andSlowHeadsGet408() {
        XCTAssertEqual(ProxyFault.client(HTTPParseError(status: 431, reason: "too many")).answer, .init(status: 431, message: "too many"))
        XCTAssertEqual(ProxyFault.clientTooSlow(headerRead: .seconds(10)).answer.status, 408)
        let slowBody = ProxyFault.clientBodyTooSlow(clientBody: .seconds(1))
        XCTAssertEqual(slowBody.answer, .init(status: 408, message: "no request body bytes received for 1s"))
        XCTAssertFalse(slowBody.isConnectionFailure, "a slow upload is never the endpoint's fault")
        XCTAssertEqual(slowBody.reason, .clientTimeout)
    }

    func testUpstreamFaults_are502Or504_andOnlyUnreachableOrTimedOutCountAsConnectionFailures() {
        let unreachable = ProxyFault.upstreamUnreachable(reason: "web/blue refused the connection")
        let invalid = ProxyFault.upstreamInvalid(reason: "invalid response")
        let timedOut = ProxyFault.upstreamTimedOut(reason: "no response within 30s")
        XCTAssertEqual(unreachable.answer, .init(status: 502, message: "bad gateway: web/blue refused the connection"))
        XCTAssertEqual(invalid.answer.status, 502)
        XCTAssertEqual(timedOut.answer, .init(status: 504, message: "upstream timed out: no response within 30s"))
        XCTAssertEqual([unreachable, invalid, timedOut].map(\.isConnectionFailure), [true, false, true])
    }

    func testGateAndHoldFaults_are503_withRetryAfterWhereTheClientMayRetry() {
        XCTAssertEqual(ProxyFault.listenerRemoved.answer, .init(status: 503, message: "this listener is being removed"))
        XCTAssertEqual(
            ProxyFault.noEndpoint(profile: "web", retryAfter: .seconds(2)).answer,
            .init(status: 503, message: "no endpoint of profile web is available", retryAfter: .seconds(2)))
        XCTAssertEqual(ProxyFault.readOnly(profile: "web", method: "POST", retryAfter: .seconds(3)).answer.retryAfter, .seconds(3))
        XCTAssertEqual(
            ProxyFault.holdFull(profile: "web", why: .paused, maxHeld: 4, retryAfter: .seconds(1)).answer.message,
            "web is holding requests (paused) and its hold queue is full (max_held 4)")
        let timedOut = ProxyFault.holdTimedOut(profile: "web", why: .writesHeld).answer
        XCTAssertEqual(timedOut.status, 503)
        XCTAssertEqual(timedOut.retryAfter, .seconds(5))
        XCTAssertTrue(timedOut.message.contains("read-only, writes wait"), timedOut.message)
    }
}
