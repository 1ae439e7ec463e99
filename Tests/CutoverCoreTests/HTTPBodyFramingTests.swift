import CutoverCore
import XCTest

final class HTTPBodyFramingTests: XCTestCase {
    func request(_ fields: HTTPHeaders, version: HTTPVersion = .http1_1) -> HTTPRequestHead {
        HTTPRequestHead(method: "POST", target: "/", version: version, headers: [("Host", "a")] + fields)
    }

    func requestFraming(_ fields: HTTPHeaders, version: HTTPVersion = .http1_1) -> Result<BodyFraming, HTTPParseError> {
        do throws(HTTPParseError) {
            return .success(try request(fields, version: version).bodyFraming())
        } catch {
            return .failure(error)
        }
    }

    func assertRequestRejected(_ fields: HTTPHeaders, _ status: Int, _ reasonPart: String, version: HTTPVersion = .http1_1, line: UInt = #line) {
        switch requestFraming(fields, version: version) {
        case .success(let framing): XCTFail("accepted as \(framing)", line: line)
        case .failure(let error):
            XCTAssertEqual(error.status, status, error.description, line: line)
            XCTAssertTrue(error.reason.contains(reasonPart), error.reason, line: line)
        }
    }

    func testRequestWithoutFramingHeaders_hasNoBody() {
        XCTAssertEqual(try requestFraming([]).get(), .none)
    }

    func testRequestContentLength_isTheBodyLength() {
        XCTAssertEqual(try requestFraming([("Content-Length", "42")]).get(), .contentLength(42))
        XCTAssertEqual(try requestFraming([("content-length", "0")]).get(), .contentLength(0))
        XCTAssertEqual(try requestFraming([("Content-Length", "9223372036854775807")]).get(), .contentLength(Int64.max))
    }

    func testIdenticalRepeatedContentLengths_countAsOne() {
        XCTAssertEqual(try requestFraming([("Content-Length", "7"), ("Content-Length", "7")]).get(), .contentLength(7))
        XCTAssertEqual(try requestFraming([("Content-Length", "7, 7")]).get(), .contentLength(7))
    }

    func testBadContentLengths_areRejected400() {
        assertRequestRejected([("Content-Length", "7"), ("Content-Length", "8")], 400, "conflicting")
        assertRequestRejected([("Content-Length", "7, 8")], 400, "conflicting")
        assertRequestRejected([("Content-Length", "+7")], 400, "not a number")
        assertRequestRejected([("Content-Length", "-1")], 400, "not a number")
        assertRequestRejected([("Content-Length", "0x10")], 400, "not a number")
        assertRequestRejected([("Content-Length", "1 2")], 400, "not a number")
        assertRequestRejected([("Content-Length", "")], 400, "empty")
        assertRequestRejected([("Content-Length", "9223372036854775808")], 400, "too large")
        assertRequestRejected([("Content-Length", "99999999999999999999999")], 400, "too large")
    }

    func testChunkedRequest_isChunked() {
        XCTAssertEqual(try requestFraming([("Transfer-Encoding", "chunked")]).get(), .chunked)
        XCTAssertEqual(try requestFraming([("Transfer-Encoding", "Chunked")]).get(), .chunked)
    }

    func testContentLengthWithTransferEncoding_isRejected400() {
        assertRequestRejected([("Content-Length", "3"), ("Transfer-Encoding", "chunked")], 400, "both present")
    }

    func testTransferEncodingInHTTP10Request_isRejected400() {
        assertRequestRejected([("Transfer-Encoding", "chunked")], 400, "HTTP/1.0", version: .http1_0)
    }

    func testTransferEncodingNotEndingInChunked_isRejected400() {
        assertRequestRejected([("Transfer-Encoding", "gzip")], 400, "does not end with chunked")
        assertRequestRejected([("Transfer-Encoding", "chunked, gzip")], 400, "does not end with chunked")
        assertRequestRejected([("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "identity")], 400, "does not end")
        assertRequestRejected([("Transfer-Encoding", " , ")], 400, "empty")
    }

    func testChunkedTwice_isRejected400() {
        assertRequestRejected([("Transfer-Encoding", "chunked, chunked")], 400, "more than once")
        assertRequestRejected([("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")], 400, "more than once")
    }

    func testOtherCodingBeforeChunked_isRejected501() {
        assertRequestRejected([("Transfer-Encoding", "gzip, chunked")], 501, "other than chunked")
        assertRequestRejected([("Transfer-Encoding", "gzip"), ("Transfer-Encoding", "chunked")], 501, "other than chunked")
    }

    // MARK: Responses

    func responseFraming(_ status: Int, _ fields: HTTPHeaders, method: String = "GET") -> Result<BodyFraming, HTTPParseError> {
        do throws(HTTPParseError) {
            return .success(try HTTPResponseHead(status: status, headers: fields).bodyFraming(requestMethod: method))
        } catch {
            return .failure(error)
        }
    }

    func testResponseFramingTable() {
        let cases: [(Int, HTTPHeaders, String, BodyFraming)] = [
            (100, [], "GET", .none),
            (101, [("Upgrade", "websocket")], "GET", .none),
            (103, [("Content-Length", "5")], "GET", .none),
            (204, [("Content-Length", "5")], "GET", .none),
            (304, [("Transfer-Encoding", "chunked")], "GET", .none),
            (200, [("Content-Length", "5")], "HEAD", .none),
            (200, [("Transfer-Encoding", "chunked")], "HEAD", .none),
            (200, [], "CONNECT", .none),
            (200, [("Transfer-Encoding", "chunked")], "GET", .chunked),
            (200, [("Transfer-Encoding", "gzip, chunked")], "GET", .chunked),
            (200, [("Transfer-Encoding", "gzip")], "GET", .untilClose),
            (200, [("Transfer-Encoding", "chunked, gzip")], "GET", .untilClose),
            (200, [("Content-Length", "5")], "GET", .contentLength(5)),
            (404, [("Content-Length", "0")], "POST", .contentLength(0)),
            (200, [], "GET", .untilClose),
            (500, [("Content-Type", "text/plain")], "GET", .untilClose),
        ]
        for (status, fields, method, expected) in cases {
            XCTAssertEqual(try responseFraming(status, fields, method: method).get(), expected, "\(status) \(method) \(fields)")
        }
    }

    func testBadResponseFraming_isRejected502() {
        let bad: [HTTPHeaders] = [
            [("Content-Length", "abc")], [("Content-Length", "5"), ("Content-Length", "6")],
            [("Content-Length", "5"), ("Transfer-Encoding", "chunked")], [("Transfer-Encoding", "chunked, chunked")],
            [("Content-Length", "99999999999999999999")],
        ]
        for fields in bad {
            guard case .failure(let error) = responseFraming(200, fields) else {
                XCTFail("accepted \(fields)")
                continue
            }
            XCTAssertEqual(error.status, 502, "\(fields)")
        }
    }

    // MARK: Connection semantics

    func testKeepAlive_followsVersionAndConnectionTokens() {
        XCTAssertTrue(HTTPRequestHead(method: "GET", target: "/", version: .http1_1).keepAlive)
        XCTAssertFalse(HTTPRequestHead(method: "GET", target: "/", version: .http1_1, headers: [("Connection", "Close")]).keepAlive)
        XCTAssertFalse(HTTPRequestHead(method: "GET", target: "/", version: .http1_1, headers: [("connection", "foo, close")]).keepAlive)
        XCTAssertFalse(HTTPRequestHead(method: "GET", target: "/", version: .http1_0).keepAlive)
        XCTAssertTrue(HTTPRequestHead(method: "GET", target: "/", version: .http1_0, headers: [("Connection", "Keep-Alive")]).keepAlive)
        XCTAssertFalse(HTTPResponseHead(version: .http1_0, status: 200).keepAlive)
        XCTAssertTrue(HTTPResponseHead(version: .http1_0, status: 200, headers: [("Connection", "keep-alive")]).keepAlive)
        XCTAssertFalse(HTTPResponseHead(version: .http1_1, status: 200, headers: [("Connection", "close")]).keepAlive)
        XCTAssertTrue(HTTPResponseHead(version: .http1_1, status: 200, headers: [("Connection", "closed")]).keepAlive)
    }

    func testExpectContinue_isRecognisedCaseInsensitively() {
        XCTAssertTrue(request([("Expect", "100-Continue")]).expectsContinue)
        XCTAssertFalse(request([("Expect", "200-ok")]).expectsContinue)
        XCTAssertFalse(request([]).expectsContinue)
    }

    func testUpgradeRequested_needsBothTokenAndUpgradeField() {
        XCTAssertTrue(request([("Connection", "keep-alive, Upgrade"), ("Upgrade", "websocket")]).upgradeRequested)
        XCTAssertFalse(request([("Upgrade", "websocket")]).upgradeRequested)
        XCTAssertFalse(request([("Connection", "upgrade")]).upgradeRequested)
    }

    func testConnectionTokens_areLowercasedAcrossFields() {
        let head = request([("Connection", "Keep-Alive, X-Foo"), ("connection", " close ,")])
        XCTAssertEqual(head.headers.connectionTokens, ["keep-alive", "x-foo", "close"])
    }
}

extension HTTPHeaders {
    static func + (lhs: HTTPHeaders, rhs: HTTPHeaders) -> HTTPHeaders {
        HTTPHeaders(Array(lhs) + Array(rhs))
    }
}
