import Foundation
import Glibc

/// The `/fault/…` routes of `cutover backend`: a backend that breaks in the ways real ones do, so the
/// proxy's answer to each can be tried against the real binary (issue 20, "backend faults").
///
/// Every fault ends its connection; none counts toward `fail_ratio` or waits for `delay_ms`.
extension SampleBackend {
    /// The faults, by the last part of their path.
    enum Fault: String, CaseIterable {
        /// A head with `Content-Length: length`, then only `sent` bytes of body, then a close (FIN).
        case cutMidBody = "cut-mid-body"
        /// A chunked head, one whole 1000-byte chunk, then half a chunk, then a close: no `0` chunk.
        case cutMidChunk = "cut-mid-chunk"
        /// A status line that is not HTTP, then silence until the peer closes (so only the parse
        /// failure, not a close, can end the exchange).
        case malformed
        /// No answer at all; the connection is held until the peer closes it.
        case hang
        /// A head with `Content-Length: length` and `sent` bytes, a pause of `pause_ms` (so the head
        /// is on its way before the reset), then a reset (`SO_LINGER` 0).
        case resetAfterHead = "reset-after-head"
    }

    /// Where the fault routes live.
    static let faultPrefix = "/fault/"

    /// Plays the fault named by `path` (under `faultPrefix`); always false: the connection ends.
    func misbehave(_ path: String, query: [String: String], connection: inout BlockingConnection) -> Bool {
        let length = Int(query["length"] ?? "") ?? 100_000
        let sent = min(length, Int(query["sent"] ?? "") ?? 1000)
        guard let fault = Fault(rawValue: String(path.dropFirst(Self.faultPrefix.count))) else {
            let known = Fault.allCases.map { Self.faultPrefix + $0.rawValue }.joined(separator: " ")
            let body = "no such fault; try one of: \(known)\n"
            connection.write("HTTP/1.1 404 Not Found\r\nX-Backend: \(name)\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)")
            return false
        }
        switch fault {
        case .cutMidBody:
            connection.write("HTTP/1.1 200 OK\r\nX-Backend: \(name)\r\nContent-Type: text/plain\r\nContent-Length: \(length)\r\n\r\n")
            connection.writeRepeated(UInt8(ascii: "x"), count: sent)
        case .cutMidChunk:
            connection.write("HTTP/1.1 200 OK\r\nX-Backend: \(name)\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
            connection.write("3e8\r\n")
            connection.writeRepeated(UInt8(ascii: "c"), count: 1000)
            connection.write("\r\n1000\r\n")  // a 4096-byte chunk, of which 100 bytes come
            connection.writeRepeated(UInt8(ascii: "c"), count: 100)
        case .malformed:
            connection.write("HTTP/1.1 two-hundred NOT-OK\r\nX-Backend: \(name)\r\n\r\n")
            connection.drainUntilClosed()
        case .hang:
            connection.drainUntilClosed()
        case .resetAfterHead:
            connection.write("HTTP/1.1 200 OK\r\nX-Backend: \(name)\r\nContent-Type: text/plain\r\nContent-Length: \(length)\r\n\r\n")
            connection.writeRepeated(UInt8(ascii: "x"), count: sent)
            usleep(useconds_t((Int(query["pause_ms"] ?? "") ?? 100) * 1000))
            // `serve` closes the descriptor; with linger 0 that close is a reset, not a FIN.
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
            setsockopt(connection.fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        }
        return false
    }
}

extension BlockingConnection {
    /// Reads and discards until the peer closes: a backend that holds a connection without answering
    /// keeps its thread only as long as the proxy keeps the connection.
    mutating func drainUntilClosed() {
        buffered = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while chunk.withUnsafeMutableBytes({ Glibc.read(fd, $0.baseAddress, $0.count) }) > 0 {}
    }
}
