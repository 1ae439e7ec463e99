import CutoverCore
import XCTest

final class HTTPChunkedBodyScannerTests: XCTestCase {
    /// Scans `bytes` in pieces of `pieceSize`; returns the total consumed and whether the body finished.
    func scan(_ bytes: [UInt8], pieceSize: Int, scanner: ChunkedBodyScanner = ChunkedBodyScanner()) throws(HTTPParseError) -> (consumed: Int, finished: Bool) {
        var scanner = scanner
        var total = 0
        var start = 0
        while start < bytes.count {
            let end = min(bytes.count, start + pieceSize)
            let result: (consumed: Int, finished: Bool)
            do {
                result = try bytes[start..<end].withUnsafeBytes { piece in try scanner.scan(piece) }
            } catch let error as HTTPParseError {
                throw error
            } catch {
                fatalError("unexpected \(error)")
            }
            total += result.consumed
            if result.finished { return (total, true) }
            XCTAssertEqual(result.consumed, end - start, "a body that has not ended consumes everything")
            start = end
        }
        return (total, false)
    }

    func scanRejection(_ text: String, scanner: ChunkedBodyScanner = ChunkedBodyScanner()) -> HTTPParseError? {
        for pieceSize in [1, 3, text.utf8.count] {
            do {
                _ = try scan(Array(text.utf8), pieceSize: pieceSize, scanner: scanner)
            } catch {
                return error
            }
        }
        return nil
    }

    let body = "5\r\nhello\r\n1A;name=value;x\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Checksum: abc\r\nX-Other:\t1\r\n\r\n"

    func testChunkedBody_finishesExactlyAtItsEnd_inAnyPieceSize() throws {
        let bytes = Array(body.utf8)
        for pieceSize in [1, 2, 3, 7, bytes.count] {
            let result = try scan(bytes, pieceSize: pieceSize)
            XCTAssertTrue(result.finished, "piece size \(pieceSize)")
            XCTAssertEqual(result.consumed, bytes.count, "piece size \(pieceSize)")
        }
    }

    func testPipelinedBytesAfterTheBody_areNotConsumed() throws {
        let next = "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"
        let bytes = Array((body + next).utf8)
        for pieceSize in [1, 5, 64, bytes.count] {
            let result = try scan(bytes, pieceSize: pieceSize)
            XCTAssertTrue(result.finished)
            XCTAssertEqual(result.consumed, body.utf8.count, "piece size \(pieceSize)")
        }
    }

    func testFinishedScanner_consumesNothingMore() throws {
        var scanner = ChunkedBodyScanner()
        let first = try Array("0\r\n\r\nGET".utf8).withUnsafeBytes { try scanner.scan($0) }
        XCTAssertEqual(first.consumed, 5)
        XCTAssertTrue(first.finished)
        XCTAssertTrue(scanner.isFinished)
        let again = try Array("GET".utf8).withUnsafeBytes { try scanner.scan($0) }
        XCTAssertEqual(again.consumed, 0)
        XCTAssertTrue(again.finished)
    }

    func testPartialBody_isNotFinished() throws {
        let bytes = Array(body.utf8)
        let result = try scan(Array(bytes.dropLast()), pieceSize: 4)
        XCTAssertFalse(result.finished)
        XCTAssertEqual(result.consumed, bytes.count - 1)
    }

    func testLargeChunkInOneCall_isSkippedWithoutScanning() throws {
        let data = String(repeating: "z", count: 100_000)
        let text = String(100_000, radix: 16) + "\r\n" + data + "\r\n0\r\n\r\n"
        let result = try scan(Array(text.utf8), pieceSize: 10_000)
        XCTAssertTrue(result.finished)
        XCTAssertEqual(result.consumed, text.utf8.count)
    }

    func testUpperCaseHexAndWhitespaceBeforeExtension_areAccepted() {
        XCTAssertNil(scanRejection("A\r\n0123456789\r\n0 ;last\r\n\r\n"))
        XCTAssertNil(scanRejection("0000000000000005\r\nhello\r\n0\r\n\r\n"))
    }

    func testChunkSizeOverflow_isRejected400() {
        XCTAssertEqual(scanRejection("10000000000000000\r\n")?.status, 400)
        XCTAssertEqual(scanRejection("8000000000000000\r\n")?.reason, "chunk size too large")
        XCTAssertEqual(scanRejection("FFFFFFFFFFFFFFFF\r\n")?.reason, "chunk size too large")
        XCTAssertEqual(scanRejection("00000000000000005\r\n")?.reason, "chunk size longer than 16 hex digits")
    }

    func testMalformedChunkSizes_areRejected400() {
        let cases: [(String, String)] = [
            ("\r\nhello\r\n", "missing chunk size"),
            (" 5\r\nhello\r\n", "whitespace before chunk size"),
            ("5 \r\nhello\r\n", "whitespace after chunk size"),
            ("0x5\r\nhello\r\n", "invalid chunk size"),
            ("-5\r\nhello\r\n", "missing chunk size"),
            ("5\nhello\r\n", "bare LF in chunked body"),
            ("5\rhello\r\n", "bare CR in chunked body"),
            ("5;a\u{1}b\r\nhello\r\n", "control character in chunk extension"),
            ("5;a\nhello\r\n", "bare LF in chunked body"),
        ]
        for (text, reason) in cases {
            let error = scanRejection(text)
            XCTAssertEqual(error?.status, 400, text.debugDescription)
            XCTAssertEqual(error?.reason, reason, text.debugDescription)
        }
    }

    func testChunkDataNotFollowedByCRLF_isRejected400() {
        XCTAssertEqual(scanRejection("5\r\nhelloX\r\n0\r\n\r\n")?.reason, "chunk data not followed by CRLF")
        XCTAssertEqual(scanRejection("5\r\nhello\rX0\r\n\r\n")?.reason, "chunk data not followed by CRLF")
        XCTAssertEqual(scanRejection("5\r\nhello\n0\r\n\r\n")?.reason, "chunk data not followed by CRLF")
    }

    func testMalformedTrailers_areRejected400() {
        let cases: [(String, String)] = [
            ("0\r\nX: a\nY: b\r\n\r\n", "bare LF in chunked body"),
            ("0\r\nX: a\r\n\n", "bare LF in chunked body"),
            ("0\r\n\rX", "bare CR in chunked body"),
            ("0\r\nX : a\r\n\r\n", "whitespace between trailer name and colon"),
            ("0\r\nX: a\r\n folded\r\n\r\n", "obsolete line folding in trailer"),
            ("0\r\nX: a\u{0}\r\n\r\n", "control character in trailer value"),
            ("0\r\n: a\r\n\r\n", "invalid trailer line"),
            ("0\r\nX(: a\r\n\r\n", "invalid character in trailer name"),
            ("0\r\nX\r\n\r\n", "invalid character in trailer name"),
        ]
        for (text, reason) in cases {
            XCTAssertEqual(scanRejection(text)?.reason, reason, text.debugDescription)
        }
    }

    func testLongLines_areRejected400() {
        let scanner = ChunkedBodyScanner(maxLineBytes: 16)
        XCTAssertNil(scanRejection("5;" + String(repeating: "e", count: 14) + "\r\nhello\r\n0\r\n\r\n", scanner: scanner))
        XCTAssertEqual(scanRejection("5;" + String(repeating: "e", count: 15) + "\r\n", scanner: scanner)?.status, 400)
        XCTAssertEqual(scanRejection("0\r\nX: " + String(repeating: "v", count: 20) + "\r\n\r\n", scanner: scanner)?.status, 400)
        let smallTrailers = ChunkedBodyScanner(maxTrailerBytes: 10)
        XCTAssertEqual(scanRejection("0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", scanner: smallTrailers)?.reason, "trailers larger than 10 bytes")
    }
}
