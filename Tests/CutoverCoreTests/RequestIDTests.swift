import CutoverCore
import XCTest

/// Issue 17: the request id, taken from the client when sane, else made per worker, and how it goes upstream.
final class RequestIDTests: XCTestCase {
    private func head(_ fields: [(String, String)]) -> HTTPRequestHead {
        var headers = HTTPHeaders()
        for (name, value) in fields { headers.add(name: name, value: value) }
        return HTTPRequestHead(method: "GET", target: "/", version: .http1_1, headers: headers)
    }

    func testClientID_isTakenOnlyWhenSane() {
        XCTAssertEqual(RequestID.fromClient(head([("x-request-id", "abc-123_Z.9")]).headers)?.value, "abc-123_Z.9")
        XCTAssertEqual(RequestID.fromClient(head([("X-Request-Id", String(repeating: "a", count: 200))]).headers)?.value.count, 200)
        for insane in ["", String(repeating: "a", count: 201), "with space", "tab\there", "caf\u{e9}"] {
            XCTAssertNil(RequestID.fromClient(head([("X-Request-Id", insane)]).headers), insane.debugDescription)
        }
        XCTAssertNil(RequestID.fromClient(head([("X-Request-Id", "a"), ("X-Request-Id", "b")]).headers), "two ids: neither is the id")
        XCTAssertNil(RequestID.fromClient(head([]).headers))
    }

    func testGenerator_countsPerWorker_behindAProcessPrefix() {
        var generator = RequestIDGenerator(processTag: 0x3f9a61c2, worker: 11)
        XCTAssertEqual(generator.next(), RequestID(value: "3f9a61c2-b-1", generated: true))
        XCTAssertEqual(generator.next().value, "3f9a61c2-b-2")
        var other = RequestIDGenerator(processTag: 0x1, worker: 0)
        XCTAssertEqual(other.id(for: head([]).headers).value, "00000001-0-1")
        XCTAssertEqual(generator.id(for: head([("X-Request-Id", "mine")]).headers), RequestID(value: "mine", generated: false))
        XCTAssertEqual(generator.id(for: head([]).headers).value, "3f9a61c2-b-3", "the client's id did not use a number")
    }

    /// A generated id goes upstream as bytes written from its counter: they must be `value`'s text.
    func testGeneratedID_writtenAsBytes_isItsValue() {
        var generator = RequestIDGenerator(processTag: 0xa, worker: 0)
        var seen: [String] = []
        for _ in 0..<17 {
            let id = generator.next()
            var written: [UInt8] = []
            HTTPForwarding.writeUpstreamRequest(
                head([("X-Request-Id", "a b")]), origin: HTTPForwarding.Origin(address: "10.0.0.1", proto: "http"), upgrading: false,
                requestID: id, into: &written)
            let text = String(decoding: written, as: UTF8.self)
            XCTAssertTrue(text.contains("\r\nX-Request-Id: \(id.value)\r\n"), text)
            XCTAssertFalse(text.contains("a b"), "the insane client id is replaced")
            seen.append(id.value)
        }
        XCTAssertEqual(seen.first, "0000000a-0-1")
        XCTAssertEqual(Array(seen.suffix(2)), ["0000000a-0-10", "0000000a-0-11"], "hex digits carry over")
    }

    func testUpstreamRequest_keepsTheClientsID_replacesAnInsaneOne() {
        let kept = HTTPForwarding.upstreamRequest(
            head([("X-Request-Id", "mine")]), clientAddress: "10.0.0.1", proto: "http", upgrading: false,
            requestID: RequestID(value: "mine", generated: false))
        XCTAssertEqual(kept.headers.values(named: "x-request-id"), ["mine"])
        let replaced = HTTPForwarding.upstreamRequest(
            head([("X-Request-Id", "a b"), ("X-Request-Id", "c")]), clientAddress: "10.0.0.1", proto: "http", upgrading: false,
            requestID: RequestID(value: "00000001-0-1", generated: true))
        XCTAssertEqual(replaced.headers.values(named: "x-request-id"), ["00000001-0-1"])
        var written: [UInt8] = []
        HTTPForwarding.writeUpstreamRequest(
            head([]), origin: HTTPForwarding.Origin(address: "10.0.0.1", proto: "http"), upgrading: false,
            requestID: RequestID(value: "00000001-0-2", generated: true), into: &written)
        XCTAssertTrue(String(decoding: written, as: UTF8.self).contains("\r\nX-Request-Id: 00000001-0-2\r\n"))
    }

    func testAccessRecord_jsonKeysAreSnakeCase_textNamesTheID() {
        let record = AccessRecord(time: "2026-12-02T03:00:00.000Z", client: "127.0.0.1", method: "GET", target: "/", status: 200, bytes: 12,
                                  durationMs: 3, profile: "web", endpoint: "blue", requestId: "abc", note: nil)
        let line = JSONCoding.line(record)
        for key in [#""duration_ms":3"#, #""request_id":"abc""#, #""endpoint":"blue""#] { XCTAssertTrue(line.contains(key), line) }
        XCTAssertFalse(line.contains("note"), "no note, no key")
        XCTAssertEqual(record.textLine, #"2026-12-02T03:00:00.000Z 127.0.0.1 "GET /" 200 web/blue 12B 3ms id=abc"#)
    }
}
