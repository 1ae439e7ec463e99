import CutoverCore
import XCTest

/// The HTTP exchange without sockets: bytes in uneven chunks, the driver's answers as events, and
/// the exact actions out. Each test says the behaviour it pins down.
final class HTTPExchangeStateMachineTests: XCTestCase {
    /// A scripted driver: performs nothing, records every action as text (bytes resolved), and answers
    /// `route` and `connectUpstream` the way the test sets up, as the real driver does at once.
    struct Harness {
        var machine: HTTPExchangeStateMachine
        var now: UInt64 = 1_000
        /// The answer to the next `.route`.
        var decision = HTTPExchangeStateMachine.RouteDecision.forward
        /// Idle upstream connections in the "pool": `.parkUpstream` adds one, a non-fresh connect takes one.
        var pooled = 0
        /// When false, a connect stays pending until the test says `upstreamConnected`.
        var connectAtOnce = true
        /// What the client and the upstream were sent, for assertions on whole bodies.
        var log: [String] = []

        init(_ configuration: HTTPExchangeStateMachine.Configuration = .init(timeouts: HTTPExchangeStateMachineTests.timeouts)) {
            machine = HTTPExchangeStateMachine(configuration: configuration)
            record(machine.clientConnected(now: now), input: nil)
        }

        mutating func client(_ text: String, chunk: Int = .max) {
            feed(text, chunk: chunk) { machine, raw, now in machine.clientBytes(raw, now: now) }
        }

        mutating func upstream(_ text: String, chunk: Int = .max) {
            feed(text, chunk: chunk) { machine, raw, now in machine.upstreamBytes(raw, now: now) }
        }

        /// Hands `text` to the machine `chunk` bytes at a time.
        private mutating func feed(
            _ text: String, chunk: Int, _ event: (inout HTTPExchangeStateMachine, UnsafeRawBufferPointer, UInt64) -> HTTPExchangeActions
        ) {
            let bytes = Array(text.utf8)
            var offset = 0
            while offset < bytes.count {
                let end = min(bytes.count, offset + chunk)
                let piece = Array(bytes[offset..<end])
                piece.withUnsafeBytes { raw in
                    let actions = event(&machine, raw, now)
                    record(actions, input: raw)
                }
                offset = end
            }
        }

        mutating func event(_ body: (inout HTTPExchangeStateMachine, UInt64) -> HTTPExchangeActions) {
            let actions = body(&machine, now)
            record(actions, input: nil)
        }

        /// Moves the clock to the deadline and says it passed.
        mutating func deadline() {
            now = machine.deadline
            event { $0.deadlinePassed(now: $1) }
        }

        /// The log since the last call, adjacent writes to one side merged (so chunking does not show).
        mutating func take() -> [String] {
            var merged: [String] = []
            for line in log {
                if let last = merged.last, let (kind, text) = Self.write(line), let (lastKind, lastText) = Self.write(last), kind == lastKind {
                    merged[merged.count - 1] = "\(kind) <\(lastText)\(text)>"
                } else {
                    merged.append(line)
                }
            }
            log = []
            return merged
        }

        private static func write(_ line: String) -> (String, String)? {
            for kind in ["client", "upstream"] where line.hasPrefix(kind + " <") && line.hasSuffix(">") {
                return (kind, String(line.dropFirst(kind.count + 2).dropLast()))
            }
            return nil
        }

        private mutating func text(_ bytes: HTTPExchangeBytes, _ input: UnsafeRawBufferPointer?) -> String {
            machine.withBytes(bytes, input: input) { String(decoding: $0, as: UTF8.self) }
        }

        private mutating func record(_ actions: HTTPExchangeActions, input: UnsafeRawBufferPointer?) {
            for index in 0..<actions.count {
                switch actions[index] {
                case .route:
                    let head = machine.requestHead!
                    log.append("route \(head.method) \(head.target)")
                    let decision = self.decision
                    record(machine.routed(decision, now: now), input: nil)
                case .connectUpstream(let fresh):
                    log.append(fresh ? "connect fresh" : "connect")
                    guard connectAtOnce else { continue }
                    let reused = !fresh && pooled > 0
                    if reused { pooled -= 1 }
                    record(machine.upstreamConnected(reused: reused, now: now), input: nil)
                case .writeRequestHead(let upgrading):
                    log.append(upgrading ? "request head (upgrade)" : "request head")
                case .writeUpstream(let bytes):
                    log.append("upstream <\(text(bytes, input))>")
                case .writeInterimHead(let head):
                    log.append("response head \(head.status)")
                case .writeResponseHead(let body, let keepAlive, let upgrading):
                    log.append("response head \(actions.responseHead!.status)" + (upgrading ? " upgrade" : keepAlive ? "" : " close"))
                    if let body { log.append("client <\(text(body, input))>") }
                case .writeClient(let bytes):
                    log.append("client <\(text(bytes, input))>")
                case .answer(let answer, let keepAlive):
                    log.append("answer \(Self.status(answer))" + (keepAlive ? "" : " close"))
                case .parkUpstream:
                    log.append("park upstream")
                    pooled += 1
                case .closeUpstream:
                    log.append("close upstream")
                case .pauseClient: log.append("pause client")
                case .resumeClient: log.append("resume client")
                case .pauseUpstream: log.append("pause upstream")
                case .resumeUpstream: log.append("resume upstream")
                case .log(let ending, let bytes):
                    log.append("log \(Self.describe(ending)) \(bytes)B")
                case .giveUpHold:
                    log.append("give up hold")
                case .handOver(let toUpstream, let toClient):
                    log.append("hand over up<\(toUpstream.map { text($0, input) } ?? "")> client<\(toClient.map { text($0, input) } ?? "")>")
                case .close:
                    log.append("close")
                case .closeNow:
                    log.append("close now")
                }
            }
        }

        static func status(_ answer: HTTPLocalAnswer) -> String {
            switch answer {
            case .fault(let fault): return String(fault.answer.status)
            case .upstream(let failure): return String(failure.fault(endpoint: "web/blue").answer.status)
            case .maintenance: return "503 maintenance"
            case .redirect: return "308"
            }
        }

        static func describe(_ ending: HTTPExchangeEnding) -> String {
            switch ending {
            case .relayed(let status): return "relayed \(status)"
            case .answered(let answer): return "answered \(status(answer))"
            case .upgraded: return "upgraded"
            case .aborted(let reason): return "aborted (\(reason.note))"
            }
        }
    }

    static let timeouts = Timeouts(
        connect: .seconds(5), headerRead: .seconds(10), idle: .seconds(60), upstreamResponse: .seconds(30), write: .seconds(20), clientBody: .seconds(15))

    static let chunkings = [1, 7, Int.max]

    private func get(_ path: String, _ extra: String = "") -> String { "GET \(path) HTTP/1.1\r\nHost: x\r\n\(extra)\r\n" }
    private func ok(_ body: String, _ extra: String = "") -> String { "HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\n\(extra)\r\n\(body)" }

    // MARK: - Pipelining and keep-alive

    func testOneRequest_isRoutedConnectedForwardedAndRelayed_thenTheConnectionWaitsForTheNext() {
        for chunk in Self.chunkings {
            var h = Harness()
            XCTAssertEqual(h.take(), ["resume client"])
            h.client(get("/a"), chunk: chunk)
            XCTAssertEqual(h.take(), ["route GET /a", "connect", "request head", "resume upstream"], "chunk \(chunk)")
            h.upstream(ok("hi"), chunk: chunk)
            XCTAssertEqual(h.take(), ["response head 200", "client <hi>", "park upstream", "log relayed 200 2B"], "chunk \(chunk)")
            XCTAssertEqual(h.machine.deadline, h.now + 60_000, "idle between requests")
        }
    }

    func testTwoPipelinedRequestsInOneRead_areAnsweredInOrder() {
        var h = Harness()
        _ = h.take()
        h.client(get("/a") + get("/b"))
        XCTAssertEqual(h.take(), ["route GET /a", "connect", "request head", "resume upstream"])
        h.upstream(ok("A"))
        XCTAssertEqual(h.take(), [
            "response head 200", "client <A>", "park upstream", "log relayed 200 1B",
            "route GET /b", "connect", "request head", "resume upstream",
        ])
        h.upstream(ok("B"))
        XCTAssertEqual(h.take(), ["response head 200", "client <B>", "park upstream", "log relayed 200 1B"])
    }

    func testThreePipelinedRequests_inUnevenChunks_areAnsweredInOrder_andTheSecondReusesTheUpstream() {
        for chunk in Self.chunkings {
            var h = Harness()
            _ = h.take()
            h.client(get("/a") + get("/b") + get("/c"), chunk: chunk)
            XCTAssertEqual(h.take().first, "route GET /a", "chunk \(chunk)")
            h.upstream(ok("A"), chunk: chunk)
            XCTAssertEqual(h.take().suffix(4), ["route GET /b", "connect", "request head", "resume upstream"], "chunk \(chunk)")
            h.upstream(ok("B"), chunk: chunk)
            XCTAssertEqual(h.take().suffix(4), ["route GET /c", "connect", "request head", "resume upstream"], "chunk \(chunk)")
            h.upstream(ok("C"), chunk: chunk)
            XCTAssertEqual(h.take(), ["response head 200", "client <C>", "park upstream", "log relayed 200 1B"], "chunk \(chunk)")
            XCTAssertEqual(h.pooled, 1, "one upstream connection served all three")
        }
    }

    func testNextPipelinedRequest_waitsWhileTheClientIsNotTakingTheResponse() {
        var h = Harness()
        _ = h.take()
        h.client(get("/a") + get("/b"))
        _ = h.take()
        h.upstream("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nAA")
        h.event { $0.clientWriteBlocked(now: $1) }
        XCTAssertEqual(h.take(), ["response head 200", "client <AA>", "pause upstream"])
        XCTAssertEqual(h.machine.deadline, h.now + 20_000, "a stalled client write is bounded by write")
        // One read the driver had already made still comes in.
        h.upstream("AA")
        XCTAssertEqual(h.take(), ["client <AA>", "park upstream", "log relayed 200 4B", "pause client"], "/b waits for the client to take /a")
        h.event { $0.clientDrained(now: $1) }
        XCTAssertEqual(h.take(), ["route GET /b", "connect", "request head", "resume upstream", "resume client"])
    }

    // MARK: - Half-close and resets

    func testHalfCloseAfterACompleteRequest_isAnsweredThenClosed() {
        var h = Harness()
        _ = h.take()
        h.client("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        h.event { $0.clientEnded(reset: false, now: $1) }
        XCTAssertEqual(h.take(), ["route POST /a", "connect", "request head", "upstream <hello>", "resume upstream", "pause client"])
        h.upstream(ok("done"))
        XCTAssertEqual(h.take(), ["response head 200 close", "client <done>", "park upstream", "log relayed 200 4B", "close"])
    }

    func testEndBeforeTheBodyIsComplete_abortsAndReleasesTheUpstreamAtOnce() {
        var h = Harness()
        _ = h.take()
        h.client("GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc")
        _ = h.take()
        h.event { $0.clientEnded(reset: false, now: $1) }
        XCTAssertEqual(h.take(), ["close upstream", "log aborted (client closed mid-request) 0B", "close now"])
        XCTAssertTrue(h.machine.isFinished)
    }

    func testEndWhileHeld_withTheBodyStillOwed_aborts_butAWholeBufferedBodyIsStillOwedItsAnswer() {
        var h = Harness()
        h.decision = .hold(until: h.now + 30_000)
        _ = h.take()
        h.client("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        XCTAssertEqual(h.take(), ["route POST /a", "pause client"])
        h.event { $0.clientEnded(reset: false, now: $1) }
        XCTAssertEqual(h.take(), ["log aborted (client closed mid-request) 0B", "close now"], "no upstream to close while held")

        var whole = Harness()
        whole.decision = .hold(until: whole.now + 30_000)
        whole.client("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        whole.event { $0.clientEnded(reset: false, now: $1) }
        _ = whole.take()
        whole.decision = .forward
        whole.event { $0.holdReleased(now: $1) }
        XCTAssertEqual(whole.take(), ["route POST /a", "connect", "request head", "upstream <abc>", "resume upstream"])
    }

    func testResetBeforeTheAnswer_abortsAtOnce() {
        var h = Harness()
        _ = h.take()
        h.client(get("/slow"))
        _ = h.take()
        h.event { $0.clientEnded(reset: true, now: $1) }
        XCTAssertEqual(h.take(), ["close upstream", "log aborted (client reset) 0B", "close now"])
    }

    // MARK: - Retries

    func testReusedUpstreamClosedBeforeAnyByte_retriesAGetOnceOnAFreshConnection() {
        var h = Harness()
        h.pooled = 1
        _ = h.take()
        h.client(get("/a"))
        XCTAssertEqual(h.take(), ["route GET /a", "connect", "request head", "resume upstream"])
        XCTAssertEqual(h.pooled, 0, "the pooled connection was used")
        h.event { $0.upstreamEnded(reset: false, now: $1) }
        XCTAssertEqual(h.take(), ["close upstream", "connect fresh", "request head", "resume upstream"])
        h.event { $0.upstreamEnded(reset: false, now: $1) }
        XCTAssertEqual(h.take(), ["close upstream", "answer 502", "log answered 502 0B"], "a fresh connection that closes is not retried")
    }

    func testReusedUpstreamClosedBeforeAnyByte_doesNotRetryAPost() {
        var h = Harness()
        h.pooled = 1
        _ = h.take()
        h.client("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        _ = h.take()
        h.event { $0.upstreamEnded(reset: false, now: $1) }
        XCTAssertEqual(h.take(), ["close upstream", "answer 502 close", "log answered 502 0B", "pause client", "close"])
    }

    // MARK: - Bodies and framing

    func testExpect100Continue_relaysTheInterimAnswer_thenTheBody() {
        for chunk in Self.chunkings {
            var h = Harness()
            _ = h.take()
            h.client("PUT /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n", chunk: chunk)
            XCTAssertEqual(h.take(), ["route PUT /a", "connect", "request head", "resume upstream"], "chunk \(chunk)")
            XCTAssertEqual(h.machine.deadline, h.now + 15_000, "waiting for the body is the client's wait")
            h.upstream("HTTP/1.1 100 Continue\r\n\r\n", chunk: chunk)
            XCTAssertEqual(h.take(), ["response head 100"], "chunk \(chunk)")
            h.client("data", chunk: chunk)
            XCTAssertEqual(h.take(), ["upstream <data>"], "chunk \(chunk)")
            XCTAssertEqual(h.machine.deadline, h.now + 30_000, "the whole request is sent: the upstream's wait")
            h.upstream(ok("ok"), chunk: chunk)
            XCTAssertEqual(h.take(), ["response head 200", "client <ok>", "park upstream", "log relayed 200 2B"], "chunk \(chunk)")
        }
    }

    func testChunkedBodyErrorMidBody_is400AndClosesBothSides() {
        for chunk in Self.chunkings {
            var h = Harness()
            _ = h.take()
            h.client("POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", chunk: chunk)
            _ = h.take()
            h.client("zz\r\n", chunk: chunk)
            XCTAssertEqual(h.take(), ["close upstream", "answer 400 close", "log answered 400 0B", "pause client", "close"], "chunk \(chunk)")
        }
    }

    func testBrokenChunkedFramingInTheFirstRead_isRefusedBeforeAnythingGoesUpstream() {
        var h = Harness()
        _ = h.take()
        h.client("POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        XCTAssertEqual(h.take(), ["answer 400 close", "log answered 400 0B", "pause client", "close"])
    }

    func testHeadAnd204And304_haveNoBodyDespiteContentLength() {
        for (request, response) in [
            ("HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n"),
            (get("/a"), "HTTP/1.1 204 No Content\r\nContent-Length: 50\r\n\r\n"),
            (get("/a"), "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n"),
        ] {
            for chunk in Self.chunkings {
                var h = Harness()
                _ = h.take()
                h.client(request, chunk: chunk)
                _ = h.take()
                h.upstream(response, chunk: chunk)
                let status = response.dropFirst(9).prefix(3)
                XCTAssertEqual(h.take(), ["response head \(status)", "park upstream", "log relayed \(status) 0B"], "\(request) chunk \(chunk)")
            }
        }
    }

    func testBytesAfterAResponseWithoutBody_makeTheUpstreamUnfitForReuse() {
        var h = Harness()
        _ = h.take()
        h.client(get("/a"))
        _ = h.take()
        h.upstream("HTTP/1.1 204 No Content\r\n\r\njunk")
        XCTAssertEqual(h.take(), ["response head 204", "close upstream", "log relayed 204 0B"])
    }

    func testChunkedResponse_isRelayedWhole_inAnyChunking() {
        for chunk in Self.chunkings {
            var h = Harness()
            _ = h.take()
            h.client(get("/a"))
            _ = h.take()
            h.upstream("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", chunk: chunk)
            XCTAssertEqual(h.take(), ["response head 200", "client <2\r\nhi\r\n0\r\n\r\n>", "park upstream", "log relayed 200 12B"], "chunk \(chunk)")
        }
    }

    func testUpstreamClosingAnUntilCloseBody_endsItAsComplete_butCuttingALengthIsAnAbort() {
        var h = Harness()
        _ = h.take()
        h.client(get("/a"))
        _ = h.take()
        h.upstream("HTTP/1.1 200 OK\r\n\r\nstream")
        h.event { $0.upstreamEnded(reset: false, now: $1) }
        XCTAssertEqual(h.take(), ["response head 200 close", "client <stream>", "close upstream", "log relayed 200 6B", "pause client", "close"])

        var cut = Harness()
        _ = cut.take()
        cut.client(get("/a"))
        _ = cut.take()
        cut.upstream("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        cut.event { $0.upstreamEnded(reset: false, now: $1) }
        XCTAssertEqual(cut.take(), ["response head 200", "client <abc>", "close upstream", "log aborted (upstream closed mid-response) 3B", "close now"])
    }

    // MARK: - Upgrade

    func testUpgrade_101HandsTheConnectionOverWithTheBytesOwedToEachSide() {
        var h = Harness()
        _ = h.take()
        h.client(get("/ws", "Connection: upgrade\r\nUpgrade: echo\r\n") + "early")
        XCTAssertEqual(h.take(), ["route GET /ws", "connect", "request head (upgrade)", "resume upstream"])
        h.upstream("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: upgrade\r\n\r\nhello")
        XCTAssertEqual(h.take(), ["response head 101 upgrade", "log upgraded 0B", "hand over up<early> client<hello>"])
        XCTAssertTrue(h.machine.isFinished)
    }

    func testUnrequested101_is502() {
        var h = Harness()
        _ = h.take()
        h.client(get("/a"))
        _ = h.take()
        h.upstream("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\n\r\n")
        XCTAssertEqual(h.take(), ["close upstream", "answer 502", "log answered 502 0B"])
    }

    // MARK: - Holds

    func testHoldThenRelease_routesAgainAndForwards() {
        var h = Harness()
        h.decision = .hold(until: h.now + 30_000)
        _ = h.take()
        h.client(get("/a"))
        XCTAssertEqual(h.take(), ["route GET /a", "pause client"])
        XCTAssertEqual(h.machine.deadline, h.now + 30_000)
        h.decision = .forward
        h.event { $0.holdReleased(now: $1) }
        XCTAssertEqual(h.take(), ["route GET /a", "connect", "request head", "resume upstream", "resume client"])
    }

    func testHoldTimeout_asksWhyThenAnswers503WithRetryAfter() {
        var h = Harness()
        h.decision = .hold(until: h.now + 2_000)
        _ = h.take()
        h.client(get("/a"))
        _ = h.take()
        h.deadline()
        XCTAssertEqual(h.take(), ["give up hold"])
        var answered: HTTPExchangeActions?
        let fault = ProxyFault.holdTimedOut(profile: "web", why: .paused)
        h.event { machine, now in
            let actions = machine.holdTimedOut(fault, now: now)
            answered = actions
            return actions
        }
        XCTAssertEqual(h.take(), ["answer 503", "log answered 503 0B", "resume client"], "a request without body keeps its connection")
        XCTAssertEqual(answered?[0], .answer(.fault(fault), keepAlive: true))
        XCTAssertEqual(fault.answer.retryAfter, .seconds(5))
    }

    // MARK: - Deadlines

    func testDrainDeadline_abortsTheExchangeInProgress() {
        var h = Harness()
        _ = h.take()
        h.client(get("/a"))
        h.upstream("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        _ = h.take()
        h.event { $0.forceClose(reason: "drain timeout", now: $1) }
        XCTAssertEqual(h.take(), ["close upstream", "log aborted (drain timeout) 3B", "close now"])
    }

    func testUpstreamResponseTimeout_is504_andStartsOnlyOnceTheRequestIsSent() {
        var h = Harness()
        _ = h.take()
        h.client("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
        _ = h.take()
        XCTAssertEqual(h.machine.deadline, h.now + 15_000, "client_body while the body is owed")
        h.now += 10_000
        h.client("cd")
        _ = h.take()
        XCTAssertEqual(h.machine.deadline, h.now + 30_000, "upstream_response from the last body byte")
        h.deadline()
        XCTAssertEqual(h.take(), ["close upstream", "answer 504 close", "log answered 504 0B", "pause client", "close"])
    }

    func testStalledRequestBody_is408_theClientsFault() {
        var h = Harness()
        _ = h.take()
        h.client("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
        _ = h.take()
        h.deadline()
        XCTAssertEqual(h.take(), ["close upstream", "answer 408 close", "log answered 408 0B", "pause client", "close"])
    }

    func testConnectTimeout_is504() {
        var h = Harness()
        h.connectAtOnce = false
        _ = h.take()
        h.client(get("/a"))
        XCTAssertEqual(h.take(), ["route GET /a", "connect"])
        XCTAssertEqual(h.machine.deadline, h.now + 5_000)
        h.deadline()
        XCTAssertEqual(h.take(), ["close upstream", "answer 504", "log answered 504 0B"])
    }

    func testSlowHead_is408() {
        var h = Harness()
        _ = h.take()
        h.client("GET /a HTTP/1.1\r\nHo")
        XCTAssertEqual(h.machine.deadline, h.now + 10_000)
        h.deadline()
        XCTAssertEqual(h.take(), ["answer 408 close", "log answered 408 0B", "pause client", "close"])
    }

    func testMalformedResponse_is502_inAnyChunking() {
        for chunk in Self.chunkings {
            var h = Harness()
            _ = h.take()
            h.client(get("/a"))
            _ = h.take()
            h.upstream("HTTP/1.1 2x0 Nope\r\n\r\n", chunk: chunk)
            XCTAssertEqual(h.take(), ["close upstream", "answer 502", "log answered 502 0B"], "chunk \(chunk)")
        }
    }

    func testMalformedRequestHead_is400AndCloses() {
        var h = Harness()
        _ = h.take()
        h.client("GET /a HTTP/1.1\r\nHost : x\r\n\r\n")
        XCTAssertEqual(h.take(), ["answer 400 close", "log answered 400 0B", "pause client", "close"])
        h.client(get("/b"))
        XCTAssertEqual(h.take(), [], "nothing after a refused head is read")
    }

    func testLocalAnswer_keepsTheConnectionForTheNextRequest() {
        var h = Harness()
        h.decision = .answer(.fault(.noRoute(host: "x", listener: "web")))
        _ = h.take()
        h.client(get("/a") + get("/b"))
        XCTAssertEqual(h.take(), ["route GET /a", "answer 404", "log answered 404 0B", "route GET /b", "answer 404", "log answered 404 0B"])
    }
}
