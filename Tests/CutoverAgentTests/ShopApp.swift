import CutoverAgent
import Foundation
import Synchronization
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A small web application for the workflow tests, in two versions over PostgreSQL. Every request
/// opens its own session, so a fenced database is seen at once and no idle pooled session blocks a
/// template copy. `/healthz` is healthy only when the database carries this version's schema
/// (`schema_version` holds `version`), as a real v2 is not ready before its migration ran.
///
/// Routes: `GET /healthz`; `GET /items` (the row count); `POST /items/ID` (inserts row ID; v2 also
/// fills column `note`, which only the v2 schema has); `GET /slow` (the row count after a second; `/slow/N`: N seconds).
/// Answers carry `X-Backend: NAME`.
final class ShopApp: @unchecked Sendable {  // `listener` is set once in init; the rest is immutable or locked
    let name: String
    let version: Int
    let dsn: String
    let port: UInt16
    private let listener: Int32
    private let failures = Mutex<[String]>([])
    private let stopped = Atomic<Bool>(false)
    /// A broken release: reads (`GET /items`) answer 500 while `/healthz` stays healthy, so only
    /// a guard window on live traffic can tell.
    let failsReads: Bool

    /// Listens on 127.0.0.1 (a free port), one thread per connection.
    init(name: String, version: Int, dsn: String, failsReads: Bool = false) throws {
        self.name = name
        self.version = version
        self.dsn = dsn
        self.failsReads = failsReads
        (listener, port) = try TestSocket.listen()
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    var address: String { "127.0.0.1:\(port)" }

    /// Requests this app answered with a 5xx, with the reason.
    var errors: [String] { failures.withLock { $0 } }

    func stop() {
        stopped.store(true, ordering: .relaxed)
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private func acceptLoop() {
        while !stopped.load(ordering: .relaxed) {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            Thread { [self] in
                serve(client)
                close(client)
            }.start()
        }
    }

    /// Serves keep-alive requests on one connection until the peer closes.
    private func serve(_ fd: Int32) {
        var reader = TestSocket.Reader(fd: fd)
        while let (head, _) = reader.nextMessage() {
            let words = head.split(separator: "\r\n").first?.split(separator: " ") ?? []
            guard words.count >= 2 else { return }
            let (status, text) = answer(method: String(words[0]), path: String(words[1]))
            let response = "HTTP/1.1 \(status) \(status < 300 ? "OK" : "Error")\r\nContent-Length: \(text.utf8.count)\r\nX-Backend: \(name)\r\n\r\n\(text)"
            guard TestSocket.sendAll(fd, Array(response.utf8)) else { return }
        }
    }

    private func answer(method: String, path: String) -> (Int, String) {
        do {
            let connection = try PostgresConnection(try ConnectionString(dsn), connectTimeout: .seconds(5))
            switch (method, path) {
            case ("GET", "/healthz"):
                let found = try connection.scalar("SELECT count(*) FROM schema_version WHERE version = \(version)")
                return found == "1" ? (200, "ok v\(version)\n") : (503, "schema v\(version) missing\n")
            case ("GET", "/items") where failsReads:
                return (500, "v\(version) is broken\n")
            case ("GET", "/items"):
                return (200, (try connection.scalar("SELECT count(*) FROM items") ?? "0") + "\n")
            case ("GET", _) where path == "/slow" || path.hasPrefix("/slow/"):
                // A request in flight for a second (or /slow/N: N seconds): what a drain must let finish.
                _ = try connection.query("SELECT pg_sleep(\(Int(path.dropFirst("/slow/".count)) ?? 1))")
                return (200, (try connection.scalar("SELECT count(*) FROM items") ?? "0") + "\n")
            case ("POST", _) where path.hasPrefix("/items/"):
                guard let id = Int(path.dropFirst("/items/".count)) else { return (400, "bad id\n") }
                try connection.query(version >= 2 ? "INSERT INTO items (id, note) VALUES (\(id), 'v2')" : "INSERT INTO items (id) VALUES (\(id))")
                return (201, "created \(id)\n")
            default:
                return (404, "no route\n")
            }
        } catch {
            // /healthz failing is how a v2 without its database says "not ready": not an app error.
            if path != "/healthz" { failures.withLock { $0.append("\(method) \(path): \(error)") } }
            return (path == "/healthz" ? 503 : 500, "\(error)\n")
        }
    }
}

/// Keeps several keep-alive connections busy through the proxy, half writing and half reading,
/// recording every answer and every acknowledged write id. Bounded in requests and by `stop`.
final class ShopLoad: @unchecked Sendable {  // the arrays are guarded by `lock`
    struct Answer {
        let method: String
        let status: Int
        let backend: String
        let started: Date
        let ended: Date
        let body: String
    }

    private let lock = NSLock()
    private var answers: [Answer] = []
    private var acknowledged: [Int] = []
    private var problems: [String] = []
    private let stopFlag = Atomic<Bool>(false)
    private let nextID = Atomic<Int>(1)
    private let group = DispatchGroup()
    private let maxRequests: Int
    private var maintenance: [Answer] = []
    /// When set, the proxy's maintenance `503` with `Retry-After` is an expected answer, counted in
    /// `maintenanceAnswers` and not in `failures` (a maintenance window answers so by design).
    let expectsMaintenance = Atomic<Bool>(false)

    init(maxRequests: Int = 100_000) { self.maxRequests = maxRequests }

    /// Starts `writers` connections that only write and `readers` that only read: a held write then
    /// never keeps a read waiting behind it, so the load shows whether reads go on during a window.
    func start(port: UInt16, writers: Int = 3, readers: Int = 3) {
        for write in Array(repeating: true, count: writers) + Array(repeating: false, count: readers) {
            group.enter()
            Thread { [self] in
                defer { group.leave() }
                loop(port: port, write: write)
            }.start()
        }
    }

    /// Stops the load and waits for every connection's last answer.
    func stop() {
        stopFlag.store(true, ordering: .relaxed)
        group.wait()
    }

    var results: [Answer] { lock.withLock { answers } }
    var acknowledgedWrites: [Int] { lock.withLock { acknowledged } }
    /// Every answer that was not 2xx, and every exchange that got no answer.
    var failures: [String] { lock.withLock { problems } }
    /// The maintenance `503`s with `Retry-After` (only counted when `expectsMaintenance` is set).
    var maintenanceAnswers: [Answer] { lock.withLock { maintenance } }

    /// Waits until `count` more answers arrived than when called (bounded by `timeout`).
    @discardableResult
    func waitForAnswers(_ count: Int, timeout: TimeInterval = 30) -> Bool {
        let target = results.count + count
        return waitUntil(timeout: timeout) { self.results.count >= target }
    }

    private func loop(port: UInt16, write: Bool) {
        var connection: TestSocket.Client?
        while !stopFlag.load(ordering: .relaxed), nextID.load(ordering: .relaxed) < maxRequests {
            do {
                if connection == nil { connection = try TestSocket.Client(port: port, readTimeout: 120) }
                if !exchange(connection!, write: write) { connection = nil }
            } catch {
                lock.withLock { problems.append("connect: \(error)") }
                usleep(20_000)
            }
        }
    }

    private func exchange(_ connection: TestSocket.Client, write: Bool) -> Bool {
        let id = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        let method = write ? "POST" : "GET"
        let started = Date()
        let request = write ? "POST /items/\(id) HTTP/1.1\r\nHost: shop\r\nContent-Length: 0\r\n\r\n" : "GET /items HTTP/1.1\r\nHost: shop\r\n\r\n"
        guard let (head, body) = connection.exchange(request) else {
            lock.withLock { problems.append("\(method) got no answer") }
            return false
        }
        let lines = head.split(separator: "\r\n")
        guard let statusLine = lines.first, let status = Int(statusLine.split(separator: " ").dropFirst().first ?? "") else {
            lock.withLock { problems.append("\(method) got no status line: \(head.prefix(80))") }
            return false
        }
        let backend = lines.first { $0.lowercased().hasPrefix("x-backend:") }
            .map { $0.dropFirst("x-backend:".count).trimmingCharacters(in: .whitespaces) } ?? "-"
        let text = String(decoding: body, as: UTF8.self)
        let isMaintenance = status == 503 && backend == "-" && lines.contains { $0.lowercased().hasPrefix("retry-after:") }
        lock.withLock {
            let answer = Answer(method: method, status: status, backend: backend, started: started, ended: Date(), body: text)
            answers.append(answer)
            if isMaintenance && expectsMaintenance.load(ordering: .relaxed) {
                maintenance.append(answer)
                return
            }
            if write && (200..<300).contains(status) { acknowledged.append(id) }
            if !(200..<300).contains(status) { problems.append("\(method) \(status) from \(backend): \(text.prefix(200))") }
        }
        return !head.lowercased().contains("connection: close")
    }
}

/// Blocking loopback sockets for the workflow tests' app and load.
enum TestSocket {
    /// A listening socket on 127.0.0.1 and its port.
    static func listen() throws -> (Int32, UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, Glibc.listen(fd, 128) == 0 else {
            close(fd)
            throw FixtureError("cannot listen: \(String(cString: strerror(errno)))")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return (fd, UInt16(bigEndian: address.sin_port))
    }

    @discardableResult
    static func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    /// Reads HTTP/1.1 messages framed by Content-Length (what the app and the proxy send here).
    struct Reader {
        let fd: Int32
        var buffer: [UInt8] = []

        /// The next head (without the blank line) and its body; nil at end of stream or timeout.
        mutating func nextMessage() -> (String, [UInt8])? {
            let marker = Array("\r\n\r\n".utf8)
            while true {
                if let end = Self.find(marker, in: buffer) {
                    let head = String(decoding: buffer[..<end], as: UTF8.self)
                    let length = head.split(separator: "\r\n").dropFirst()
                        .first { $0.lowercased().hasPrefix("content-length:") }
                        .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
                    let bodyStart = end + marker.count
                    while buffer.count < bodyStart + length {
                        guard fill() else { return nil }
                    }
                    let body = Array(buffer[bodyStart..<(bodyStart + length)])
                    buffer.removeFirst(bodyStart + length)
                    return (head, body)
                }
                guard fill() else { return nil }
            }
        }

        private mutating func fill() -> Bool {
            var chunk = [UInt8](repeating: 0, count: 16_384)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { return false }
            buffer += chunk[0..<n]
            return true
        }

        private static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
            guard haystack.count >= needle.count else { return nil }
            for start in 0...(haystack.count - needle.count) where haystack[start..<(start + needle.count)].elementsEqual(needle) {
                return start
            }
            return nil
        }
    }

    /// One keep-alive client connection to 127.0.0.1.
    final class Client {
        let fd: Int32
        private var reader: Reader

        init(port: UInt16, readTimeout: Int) throws {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
            let status = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard status == 0 else {
                close(fd)
                throw FixtureError("connect to 127.0.0.1:\(port): \(String(cString: strerror(errno)))")
            }
            var timeout = timeval(tv_sec: readTimeout, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            self.fd = fd
            reader = Reader(fd: fd)
        }

        deinit { close(fd) }

        /// Sends `request` and reads its answer.
        func exchange(_ request: String) -> (String, [UInt8])? {
            guard TestSocket.sendAll(fd, Array(request.utf8)) else { return nil }
            return reader.nextMessage()
        }
    }
}
