import Foundation
import Glibc

/// A plain TCP client for byte-exact HTTP tests (what curl would never send).
final class RawConnection {
    private(set) var fd: Int32

    init(port: UInt16, host: String = "127.0.0.1") throws {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        inet_pton(AF_INET, host, &address.sin_addr)
        fd = try Self.connected(family: AF_INET, to: address, name: "\(host):\(port)")
    }

    /// Connects to a Unix stream socket (the admin socket, for clients `cutover ctl` would not be).
    init(unixPath path: String) throws {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: path.utf8.prefix(raw.count - 1))
        }
        fd = try Self.connected(family: AF_UNIX, to: address, name: path)
    }

    /// A blocking stream socket connected to `address`, with a 10 s read timeout.
    private static func connected<Address>(family: Int32, to address: Address, name: String) throws -> Int32 {
        let fd = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        var address = address
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<Address>.size)) }
        }
        guard status == 0 else {
            close(fd)
            throw FixtureError("connect to \(name): \(String(cString: strerror(errno)))")
        }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Closes with a reset (`SO_LINGER` 0), as a client that crashes or gives up does.
    func reset() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(fd)
        fd = -1
    }

    func send(_ text: String) { send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    /// Half-closes our sending side.
    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// Sets how long one read may wait.
    func setReadTimeout(_ seconds: Double) {
        var timeout = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Reads until the peer closes or the read timeout passes.
    func readAll() -> String {
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            data.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// Reads until `text` appears in what was received (or the read timeout passes).
    func read(until text: String) -> String {
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while !String(decoding: data, as: UTF8.self).contains(text) {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            data.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// Bytes received after the last complete response (pipelined answers).
    private var leftover: [UInt8] = []

    /// What the peer sent that no request asked for yet: bytes after the last complete response,
    /// or waiting unread. Call between exchanges of a client that does not pipeline.
    func unsolicitedBytes() -> String? {
        var waiting = [UInt8](repeating: 0, count: 512)
        let n = waiting.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, Int32(MSG_PEEK | MSG_DONTWAIT)) }
        let bytes = leftover + (n > 0 ? waiting[0..<n] : [])
        return bytes.isEmpty ? nil : String(decoding: bytes.prefix(120), as: UTF8.self)
    }

    /// Reads one HTTP response with a Content-Length body (or none), enough for keep-alive tests.
    func readResponse() -> String {
        var data = leftover
        leftover = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let separator: [UInt8] = [13, 10, 13, 10]
        while true {
            if let headEnd = data.firstRange(of: separator) {
                let head = String(decoding: data[..<headEnd.lowerBound], as: UTF8.self).lowercased()
                let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                    .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
                let total = headEnd.upperBound + length
                if data.count >= total {
                    leftover = Array(data[total...])
                    return String(decoding: data[..<total], as: UTF8.self)
                }
            }
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return String(decoding: data, as: UTF8.self) }
            data.append(contentsOf: chunk[0..<n])
        }
    }
}
