import Foundation
import Glibc
import Synchronization

/// A TCP server inside the test process, one thread per connection, for upstream behaviour the
/// sample backend does not have (raw echo with a farewell after end of stream, recording heads).
final class TestUpstream: Sendable {
    let port: UInt16
    private let fd: Int32
    /// Connections accepted so far.
    let accepted = Atomic<Int>(0)

    /// Listens on 127.0.0.1 (a free port) and runs `serve` on its own thread for each connection;
    /// the descriptor is closed when `serve` returns. `serial` serves one connection at a time on the
    /// accept thread, in accept order (for tests of the order in which requests arrive).
    init(serial: Bool = false, serve: @escaping @Sendable (Int32) -> Void) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            close(fd)
            throw FixtureError("test upstream cannot listen: \(String(cString: strerror(errno)))")
        }
        self.fd = fd
        self.port = Self.localPort(fd)
        let thread = Thread { [self] in
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 {
                    if errno == EINTR { continue }
                    return  // closed by stop()
                }
                accepted.wrappingAdd(1, ordering: .relaxed)
                if serial {
                    serve(client)
                    close(client)
                    continue
                }
                let worker = Thread {
                    serve(client)
                    close(client)
                }
                worker.start()
            }
        }
        thread.start()
    }

    var address: String { "127.0.0.1:\(port)" }

    func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }

    /// A port on 127.0.0.1 that refuses connections (bound once, then released).
    static func closedPort() -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return localPort(fd)
    }

    private static func localPort(_ fd: Int32) -> UInt16 {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return UInt16(bigEndian: address.sin_port)
    }
}

/// Blocking socket helpers for `TestUpstream` handlers.
enum Blocking {
    /// Reads once; nil at end of stream or error.
    static func read(_ fd: Int32, max: Int = 65_536) -> [UInt8]? {
        var chunk = [UInt8](repeating: 0, count: max)
        let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        return n > 0 ? Array(chunk[0..<n]) : nil
    }

    /// Writes everything; false when the peer is gone.
    @discardableResult
    static func write(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }
}

/// Text received by a `TestUpstream`, shared with its connection threads.
final class Recorder: Sendable {
    private let texts = Mutex<[String]>([])

    func append(_ text: String) { texts.withLock { $0.append(text) } }

    var all: [String] { texts.withLock { $0 } }
}
