import Foundation
import Glibc

/// One HTTP response as read off a raw connection.
struct RawResponse {
    let status: Int
    /// The head as received, status line included, without the final blank line.
    let head: String
    let body: [UInt8]

    var text: String { String(decoding: body, as: UTF8.self) }

    /// The value of the first field named `name` (case-insensitive), if any.
    func header(_ name: String) -> String? {
        for line in head.components(separatedBy: "\r\n").dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == name.lowercased() {
                return parts[1].trimmingCharacters(in: .whitespaces)
            }
        }
        return nil
    }
}

/// Reads HTTP responses one at a time from a `RawConnection`, keeping what arrived after each, so
/// pipelined answers, interim `100 Continue` and bodyless responses can be checked byte-exact.
final class ResponseReader {
    let connection: RawConnection
    private var buffer: [UInt8] = []
    /// Whether the last read saw the peer close (end of stream or reset) rather than a timeout.
    private(set) var peerClosed = false

    init(_ connection: RawConnection) {
        self.connection = connection
    }

    /// Reads once more from the socket; false at end of stream, reset or read timeout.
    private func fill() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let n = chunk.withUnsafeMutableBytes { Glibc.read(connection.fd, $0.baseAddress, $0.count) }
        if n > 0 {
            buffer.append(contentsOf: chunk[0..<n])
            return true
        }
        // EAGAIN is the SO_RCVTIMEO timeout; anything else means the peer is gone.
        peerClosed = n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)
        return false
    }

    /// The next response (an interim 1xx is one too); `bodyless` for answers to HEAD. Nil when the
    /// connection ended or timed out first.
    func next(bodyless: Bool = false) -> RawResponse? {
        while true {
            if let response = parse(bodyless: bodyless) { return response }
            guard fill() else { return nil }
        }
    }

    /// Reads until `marker` arrived and consumes everything up to its end; nil if it never came.
    func read(until marker: String) -> String? {
        let bytes = Array(marker.utf8)
        while true {
            if let range = find(bytes, in: buffer, from: 0) {
                let text = String(decoding: buffer[0..<range.upperBound], as: UTF8.self)
                buffer.removeFirst(range.upperBound)
                return text
            }
            guard fill() else { return nil }
        }
    }

    /// The next `count` bytes; fewer when the connection ended or timed out first.
    func read(count: Int) -> [UInt8] {
        while buffer.count < count, fill() {}
        let taken = Array(buffer.prefix(count))
        buffer.removeFirst(taken.count)
        return taken
    }

    /// Everything until the peer closes (or the read timeout passes; then `closed` is false).
    func readToEnd() -> (text: String, bytes: [UInt8], closed: Bool) {
        while fill() {}
        let bytes = buffer
        buffer = []
        return (String(decoding: bytes, as: UTF8.self), bytes, peerClosed)
    }

    private func parse(bodyless: Bool) -> RawResponse? {
        guard let headEnd = find(Array("\r\n\r\n".utf8), in: buffer, from: 0) else { return nil }
        let head = String(decoding: buffer[0..<headEnd.lowerBound], as: UTF8.self)
        let statusLine = head.split(separator: "\r\n", maxSplits: 1).first ?? ""
        let status = statusLine.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        let probe = RawResponse(status: status, head: head, body: [])
        let bodyStart = headEnd.upperBound
        if bodyless || (100..<200).contains(status) || status == 204 || status == 304 {
            buffer.removeFirst(bodyStart)
            return probe
        }
        if probe.header("Transfer-Encoding")?.lowercased() == "chunked" {
            guard let (body, end) = Self.dechunk(buffer, from: bodyStart) else { return nil }
            buffer.removeFirst(end)
            return RawResponse(status: status, head: head, body: body)
        }
        if let length = probe.header("Content-Length").flatMap({ Int($0) }) {
            guard buffer.count - bodyStart >= length else { return nil }
            let body = Array(buffer[bodyStart..<bodyStart + length])
            buffer.removeFirst(bodyStart + length)
            return RawResponse(status: status, head: head, body: body)
        }
        // Delimited by close: only complete once the peer has closed.
        guard peerClosed else { return nil }
        let body = Array(buffer[bodyStart...])
        buffer = []
        return RawResponse(status: status, head: head, body: body)
    }

    /// Decodes a chunked body starting at `start`; nil until it is complete (trailers ignored).
    static func dechunk(_ bytes: [UInt8], from start: Int) -> (body: [UInt8], end: Int)? {
        var body: [UInt8] = []
        var index = start
        let crlf = Array("\r\n".utf8)
        while true {
            guard let lineEnd = find(crlf, in: bytes, from: index) else { return nil }
            let sizeText = String(decoding: bytes[index..<lineEnd.lowerBound], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else { return nil }
            index = lineEnd.upperBound
            if size == 0 {
                // Skip trailer fields up to the empty line.
                while true {
                    guard let end = find(crlf, in: bytes, from: index) else { return nil }
                    let empty = end.lowerBound == index
                    index = end.upperBound
                    if empty { return (body, index) }
                }
            }
            guard bytes.count >= index + size + 2 else { return nil }
            body.append(contentsOf: bytes[index..<index + size])
            index += size + 2
        }
    }
}

/// The first occurrence of `needle` in `haystack` at or after `start`.
private func find(_ needle: [UInt8], in haystack: [UInt8], from start: Int) -> Range<Int>? {
    guard !needle.isEmpty, haystack.count >= needle.count, start <= haystack.count - needle.count else { return nil }
    var index = start
    while index <= haystack.count - needle.count {
        if haystack[index] == needle[0] && Array(haystack[index..<index + needle.count]) == needle {
            return index..<index + needle.count
        }
        index += 1
    }
    return nil
}
