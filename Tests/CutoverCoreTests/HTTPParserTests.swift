import CutoverCore
import XCTest

/// Parses `text` as a whole buffer with default or given limits.
func parseRequest(_ text: String, limits: HTTPHeadLimits = HTTPHeadLimits()) throws(HTTPParseError) -> HeadParse<HTTPRequestHead> {
    let bytes = Array(text.utf8)
    return try parseRequest(bytes, limits: limits)
}

func parseRequest(_ bytes: [UInt8], limits: HTTPHeadLimits = HTTPHeadLimits()) throws(HTTPParseError) -> HeadParse<HTTPRequestHead> {
    do {
        return try bytes.withUnsafeBytes { buffer in try HTTPParser.parseRequestHead(buffer, limits: limits) }
    } catch let error as HTTPParseError {
        throw error
    } catch {
        fatalError("unexpected \(error)")
    }
}

func parseResponse(_ text: String, limits: HTTPHeadLimits = HTTPHeadLimits()) throws(HTTPParseError) -> HeadParse<HTTPResponseHead> {
    do {
        return try Array(text.utf8).withUnsafeBytes { buffer in try HTTPParser.parseResponseHead(buffer, limits: limits) }
    } catch let error as HTTPParseError {
        throw error
    } catch {
        fatalError("unexpected \(error)")
    }
}

/// The status of the error parsing `text` throws, or nil when it parses.
func requestRejection(_ text: String, limits: HTTPHeadLimits = HTTPHeadLimits()) -> HTTPParseError? {
    do {
        _ = try parseRequest(text, limits: limits)
        return nil
    } catch {
        return error
    }
}

func responseRejection(_ text: String) -> HTTPParseError? {
    do {
        _ = try parseResponse(text)
        return nil
    } catch {
        return error
    }
}

final class HTTPParserTests: XCTestCase {
    let simpleGet = "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n"

    func testSimpleGet_parsesEveryPart() throws {
        guard case .complete(let head, let length) = try parseRequest(simpleGet) else {
            return XCTFail("expected a complete head")
        }
        XCTAssertEqual(head.method, "GET")
        XCTAssertEqual(head.target, "/index.html?q=1")
        XCTAssertEqual(head.version, .http1_1)
        XCTAssertEqual(head.headers, [("Host", "example.com"), ("User-Agent", "curl/8"), ("Accept", "*/*")])
        XCTAssertEqual(length, simpleGet.utf8.count)
    }

    func testEverySplitPoint_yieldsTheSameHeadOnlyWhenComplete() throws {
        let text = "POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nX-Dup: 1\r\nx-dup: 2\r\n\r\nabc"
        let bytes = Array(text.utf8)
        let headEnd = text.utf8.count - 3
        guard case .complete(let expected, headEnd) = try parseRequest(bytes) else { return XCTFail("whole buffer") }
        for split in 0...bytes.count {
            let result = try parseRequest(Array(bytes[..<split]))
            if split < headEnd {
                XCTAssertEqual(result, .incomplete, "split at \(split)")
            } else {
                XCTAssertEqual(result, .complete(expected, headLength: headEnd), "split at \(split)")
            }
        }
        XCTAssertEqual(expected.headers.values(named: "X-DUP"), ["1", "2"])
    }

    func testUnevenGrowingBuffer_completesAtTheRightCall() throws {
        let bytes = Array(simpleGet.utf8)
        var buffer: [UInt8] = []
        var calls = 0
        var cursor = 0
        let steps = [1, 7, 2, 13, 1, 1, 30, 5]
        while true {
            let step = steps[calls % steps.count]
            buffer.append(contentsOf: bytes[cursor..<min(bytes.count, cursor + step)])
            cursor = min(bytes.count, cursor + step)
            calls += 1
            if case .complete(let head, let length) = try parseRequest(buffer) {
                XCTAssertEqual(cursor, bytes.count)
                XCTAssertEqual(length, bytes.count)
                XCTAssertEqual(head.headers["host"], "example.com")
                break
            }
            XCTAssertLessThan(cursor, bytes.count, "buffer is whole but still incomplete")
        }
    }

    func testPipelinedBytesAfterHead_areNotCounted() throws {
        guard case .complete(_, let length) = try parseRequest(simpleGet + "GET / HTTP/1.1\r\n") else {
            return XCTFail("expected a complete head")
        }
        XCTAssertEqual(length, simpleGet.utf8.count)
    }

    func testLeadingEmptyLines_areSkippedAndCounted() throws {
        guard case .complete(let head, let length) = try parseRequest("\r\n\r\n" + simpleGet) else {
            return XCTFail("expected a complete head")
        }
        XCTAssertEqual(head.method, "GET")
        XCTAssertEqual(length, simpleGet.utf8.count + 4)
        XCTAssertEqual(try parseRequest("\r\n\r"), .incomplete)
    }

    func testHeaderValueWhitespace_isTrimmedAndCaseKept() throws {
        guard case .complete(let head, _) = try parseRequest("GET / HTTP/1.1\r\nHOST:\t a b \t\r\nX-Empty:\r\n\r\n") else {
            return XCTFail("expected a complete head")
        }
        XCTAssertEqual(head.headers, [("HOST", "a b"), ("X-Empty", "")])
        XCTAssertEqual(head.headers["host"], "a b")
    }

    func testHTTP10WithoutHost_isAccepted() throws {
        guard case .complete(let head, _) = try parseRequest("GET / HTTP/1.0\r\n\r\n") else {
            return XCTFail("expected a complete head")
        }
        XCTAssertEqual(head.version, .http1_0)
        XCTAssertFalse(head.keepAlive)
    }

    func testRequestTargetForms_areAcceptedWithTheirMethods() {
        XCTAssertNil(requestRejection("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"))
        XCTAssertNil(requestRejection("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"))
        XCTAssertNil(requestRejection("GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n"))
        XCTAssertNil(requestRejection("GET HTTPS://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n"))
    }

    // MARK: Rejections

    func assertRejected(_ text: String, _ status: Int, _ reasonPart: String, file: StaticString = #filePath, line: UInt = #line) {
        guard let error = requestRejection(text) else {
            return XCTFail("accepted: \(text.debugDescription)", file: file, line: line)
        }
        XCTAssertEqual(error.status, status, error.description, file: file, line: line)
        XCTAssertTrue(error.reason.contains(reasonPart), "\(error.reason) lacks \(reasonPart)", file: file, line: line)
    }

    func testBareLF_isRejected400() {
        assertRejected("GET / HTTP/1.1\nHost: a\r\n\r\n", 400, "bare LF")
        assertRejected("GET / HTTP/1.1\r\nHost: a\n\r\n", 400, "bare LF")
        assertRejected("GET / HTTP/1.1\r\nHost: a\r\n\n", 400, "bare LF")
        assertRejected("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bare LF")
    }

    func testBareLF_isRejectedBeforeTheHeadEnds() {
        assertRejected("GET / HTTP/1.1\nHost: a\n", 400, "bare LF")
    }

    func testBareCR_isRejected400() {
        assertRejected("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400, "bare CR")
        assertRejected("GET / HTTP/1.1\r\r\nHost: a\r\n\r\n", 400, "version")
        assertRejected("GET / HTTP/1.1\r\nX\r: 1\r\nHost: a\r\n\r\n", 400, "header name")
    }

    func testControlCharactersInValue_areRejected400() {
        assertRejected("GET / HTTP/1.1\r\nHost: a\u{0}b\r\n\r\n", 400, "NUL")
        assertRejected("GET / HTTP/1.1\r\nHost: a\u{1}b\r\n\r\n", 400, "control character")
        assertRejected("GET / HTTP/1.1\r\nHost: a\u{7F}b\r\n\r\n", 400, "control character")
        XCTAssertNil(requestRejection("GET / HTTP/1.1\r\nHost: a\tb\r\n\r\n"))
    }

    func testObsFold_isRejected400() {
        assertRejected("GET / HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n two\r\n\r\n", 400, "folding")
        assertRejected("GET / HTTP/1.1\r\n\tHost: a\r\n\r\n", 400, "folding")
    }

    func testWhitespaceBeforeColon_isRejected400() {
        assertRejected("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "whitespace between header name and colon")
        assertRejected("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400, "whitespace between header name and colon")
    }

    func testBadFieldNames_areRejected400() {
        assertRejected("GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n", 400, "empty header name")
        assertRejected("GET / HTTP/1.1\r\nHo(st: a\r\n\r\n", 400, "invalid character in header name")
        assertRejected("GET / HTTP/1.1\r\nHost a\r\n\r\n", 400, "header name")
        assertRejected("GET / HTTP/1.1\r\nHostname\r\n\r\n", 400, "without colon")
    }

    func testInvalidMethod_isRejected400() {
        assertRejected("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid method")
        assertRejected("GÉT / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid method")
    }

    func testInvalidTargets_areRejected400() {
        assertRejected("GET /a\u{1}b HTTP/1.1\r\nHost: a\r\n\r\n", 400, "request-target")
        assertRejected("GET /é HTTP/1.1\r\nHost: a\r\n\r\n", 400, "request-target")
        assertRejected("GET index.html HTTP/1.1\r\nHost: a\r\n\r\n", 400, "request-target")
        assertRejected("GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400, "OPTIONS")
        assertRejected("GET example.com:80 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "request-target")
        assertRejected("CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "CONNECT")
        assertRejected("CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n", 400, "CONNECT")
    }

    func testMalformedRequestLines_areRejected400() {
        assertRejected("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request line")
        assertRejected("GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request line")
        assertRejected("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400, "malformed request line")
        assertRejected("GET /\r\nHost: a\r\n\r\n", 400, "malformed request line")
        assertRejected(" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request line")
        assertRejected("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request line")
    }

    func testOtherVersions_areRejected505_andMalformedOnes400() {
        assertRejected("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, "version")
        assertRejected("GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505, "version")
        assertRejected("GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505, "version")
        assertRejected("GET / HTTP/1\r\nHost: a\r\n\r\n", 400, "version")
        assertRejected("GET / http/1.1\r\nHost: a\r\n\r\n", 400, "version")
        assertRejected("GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400, "version")
    }

    func testMissingHostInHTTP11_isRejected400() {
        assertRejected("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400, "missing Host")
    }

    func testMultipleHosts_areRejected400() {
        assertRejected("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400, "multiple Host")
        assertRejected("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400, "multiple Host")
    }

    func testFramingErrors_areRejectedByTheParser() {
        assertRejected("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "both present")
        assertRejected("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3x\r\n\r\n", 400, "Content-Length")
        assertRejected("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, "transfer coding")
    }

    // MARK: Limits

    func testLongRequestLine_isRejected414AsSoonAsItIsProven() {
        let limits = HTTPHeadLimits(maxStartLineBytes: 100)
        let line = "GET /" + String(repeating: "a", count: 95)  // exactly 100 bytes
        XCTAssertNil(requestRejection(line, limits: limits))
        XCTAssertNil(requestRejection(line + "\r", limits: limits))
        XCTAssertEqual(requestRejection(line + "a", limits: limits)?.status, 414)
        XCTAssertEqual(requestRejection(line + "a HTTP/1.1\r\n", limits: limits)?.status, 414)
        XCTAssertNil(requestRejection(line + " HTTP/1.1\r\nHost: a\r\n\r\n", limits: HTTPHeadLimits(maxStartLineBytes: 109)))
    }

    func testDefaultLimits_reject9000BytesWithoutCRLFAt414() {
        XCTAssertEqual(requestRejection("GET /" + String(repeating: "x", count: 9000))?.status, 414)
    }

    func testLargeHead_isRejected431AsSoonAsItIsProven() {
        let limits = HTTPHeadLimits(maxHeadBytes: 200)
        let head = "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + String(repeating: "b", count: 300)
        XCTAssertEqual(requestRejection(head, limits: limits)?.status, 431)
        XCTAssertEqual(requestRejection(String(repeating: "\r\n", count: 100), limits: limits)?.status, 431)
    }

    func testHeadOfExactlyMaxHeadBytes_isAccepted() throws {
        let prefix = "GET / HTTP/1.1\r\nHost: a\r\nX: "
        let filler = String(repeating: "v", count: 200 - prefix.utf8.count - 4)
        let text = prefix + filler + "\r\n\r\n"
        XCTAssertEqual(text.utf8.count, 200)
        guard case .complete = try parseRequest(text, limits: HTTPHeadLimits(maxHeadBytes: 200)) else {
            return XCTFail("expected a complete head")
        }
        XCTAssertEqual(requestRejection(text, limits: HTTPHeadLimits(maxHeadBytes: 199))?.status, 431)
    }

    func testTooManyHeaders_isRejected431BeforeTheHeadEnds() {
        let limits = HTTPHeadLimits(maxHeaderCount: 3)
        let three = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n"
        XCTAssertNil(requestRejection(three + "\r\n", limits: limits))
        XCTAssertNil(requestRejection(three, limits: limits))
        XCTAssertEqual(requestRejection(three + "C", limits: limits)?.status, 431)
        XCTAssertEqual(requestRejection(three + "C: 3\r\n\r\n", limits: limits)?.status, 431)
    }

    // MARK: Responses

    func testResponseHead_parses() throws {
        let text = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello"
        guard case .complete(let head, let length) = try parseResponse(text) else { return XCTFail("incomplete") }
        XCTAssertEqual(head, HTTPResponseHead(version: .http1_1, status: 200, reason: "OK", headers: [("Content-Length", "5"), ("Server", "x")]))
        XCTAssertEqual(length, text.utf8.count - 5)
    }

    func testResponseWithEmptyOrMissingReason_isAccepted() throws {
        guard case .complete(let a, _) = try parseResponse("HTTP/1.0 404 \r\n\r\n"),
            case .complete(let b, _) = try parseResponse("HTTP/1.1 204\r\n\r\n")
        else { return XCTFail("incomplete") }
        XCTAssertEqual(a.reason, "")
        XCTAssertEqual(a.version, .http1_0)
        XCTAssertEqual(b.status, 204)
        XCTAssertEqual(try parseResponse("HTTP/1.1 200 OK\r\n"), .incomplete)
    }

    func testBadResponses_areRejected502() {
        for bad in [
            "HTTP/1.1 200 OK\nServer: x\r\n\r\n", "HTTP/2.0 200 OK\r\n\r\n", "HTTP/1.1 20 OK\r\n\r\n",
            "HTTP/1.1 099 X\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 200 O\u{1}K\r\n\r\n",
            "HTTP/1.1 200 OK\r\nServer : x\r\n\r\n", "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", "\r\nHTTP/1.1 200 OK\r\n\r\n",
            "ICY 200 OK\r\n\r\n",
        ] {
            XCTAssertEqual(responseRejection(bad)?.status, 502, bad.debugDescription)
        }
    }

    func testLongStatusLine_isRejected502() {
        XCTAssertEqual(responseRejection("HTTP/1.1 200 " + String(repeating: "x", count: 9000))?.status, 502)
    }

    func testParseErrorDescription_namesStatusAndReason() {
        XCTAssertEqual(requestRejection("GET / HTTP/1.1\r\n\r\n")?.description, "400 Bad Request: missing Host header")
    }
}
