import CutoverControl
import CutoverCore
import Dispatch
import Foundation
import Glibc
import Synchronization

/// A small real HTTP/1.1 server that answers with its name: the demo's blue and green, and the
/// upstream that tests and operators point Cutover at to try a switch.
///
/// Routes: `/` (its name), `/healthz` (status settable with `POST /control/health?status=N`),
/// `/slow?ms=N`, `/echo` (request body back), `/bytes?n=N`, `/chunked?n=N&chunks=K`,
/// `/status?code=N`, `/headers` (the request head as received); a request with `Upgrade: echo`
/// switches protocols and echoes raw bytes. Every answer carries `X-Backend: NAME`.
/// Faults, for trying a guard window (`POST /control/faults?fail_ratio=R&delay_ms=N`, or the
/// initial `faults`): that share of answers is a 500, every answer is late by that much; `/healthz`
/// and `/control/*` are exempt, so probes stay green while users suffer. `/fault/…` routes break
/// the answer itself (cut bodies, garbage, hangs, resets; see `SampleBackend+Faults.swift`).
/// One blocking thread per connection: simple and plenty for a demo or a test.
public final class SampleBackend: Sendable {
    public let name: String
    public let port: UInt16
    private let fd: Int32
    private let healthStatus = Atomic<Int>(200)
    private let stopped = Atomic<Bool>(false)
    /// Requests answered, for tests that count what reached which backend.
    public let requests = Atomic<Int>(0)
    /// Share of answers that are 500s, in millionths (exact: every request decides by the count so far).
    private let failPerMillion = Atomic<Int>(0)
    private let faultCount = Atomic<Int>(0)
    private let delayMilliseconds = Atomic<Int>(0)

    /// Binds `address` (port 0 picks one) and starts serving on background threads; `failRatio` of
    /// the answers are 500s and each is `delay` late (see the type).
    public init(name: String, address: HostPort, failRatio: Double = 0, delay: Duration = .zero) throws {
        self.name = name
        failPerMillion.store(Int((failRatio * 1_000_000).rounded()), ordering: .relaxed)
        delayMilliseconds.store(Int(delay.milliseconds), ordering: .relaxed)
        let fd = try Socket.listen(on: address)
        _ = fcntl(fd, F_SETFL, 0)  // blocking accept on a dedicated thread
        self.fd = fd
        self.port = Socket.localPort(fd)
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    public func stop() {
        stopped.store(true, ordering: .relaxed)
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }

    private func acceptLoop() {
        while !stopped.load(ordering: .relaxed) {
            let client = accept(fd, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            Socket.setNoDelay(client)
            let thread = Thread { [self] in serve(client) }
            thread.start()
        }
    }

    private func serve(_ client: Int32) {
        defer { close(client) }
        var connection = BlockingConnection(fd: client)
        while let (head, rawHead) = connection.readHead() {
            requests.wrappingAdd(1, ordering: .relaxed)
            guard answer(head, rawHead: rawHead, connection: &connection) else { return }
            if !head.keepAlive { return }
        }
    }

    /// Answers one request; false when the connection must close.
    private func answer(_ head: HTTPRequestHead, rawHead: [UInt8], connection: inout BlockingConnection) -> Bool {
        let (path, query) = splitTarget(head.target)
        if head.headers["upgrade"]?.lowercased() == "echo" {
            connection.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: upgrade\r\nX-Backend: \(name)\r\n\r\n")
            connection.echoUntilClosed()
            return false
        }
        if head.expectsContinue { connection.write("HTTP/1.1 100 Continue\r\n\r\n") }
        let framing = (try? head.bodyFraming()) ?? .none
        let body = connection.readBody(framing)
        if path.hasPrefix(Self.faultPrefix) { return misbehave(path, query: query, connection: &connection) }
        switch path {
        case "/healthz":
            let status = healthStatus.load(ordering: .relaxed)
            return respond(&connection, head: head, status: status, body: Array("\(name) health \(status)\n".utf8))
        case "/control/health":
            healthStatus.store(Int(query["status"] ?? "") ?? 200, ordering: .relaxed)
            return respond(&connection, head: head, status: 200, body: Array("ok\n".utf8))
        case "/control/faults":
            if let ratio = query["fail_ratio"].flatMap(Double.init) { failPerMillion.store(Int((ratio * 1_000_000).rounded()), ordering: .relaxed) }
            if let delay = query["delay_ms"].flatMap(Int.init) { delayMilliseconds.store(delay, ordering: .relaxed) }
            return respond(&connection, head: head, status: 200, body: Array("ok\n".utf8))
        default:
            break
        }
        let delay = delayMilliseconds.load(ordering: .relaxed)
        if delay > 0 { usleep(useconds_t(delay * 1000)) }
        if isFaulty() {
            return respond(&connection, head: head, status: 500, body: Array("\(name) fault\n".utf8))
        }
        switch path {
        case "/slow":
            usleep(useconds_t((Int(query["ms"] ?? "") ?? 2000) * 1000))
            return respond(&connection, head: head, status: 200, body: Array("\(name) slow\n".utf8))
        case "/echo":
            return respond(&connection, head: head, status: 200, body: body)
        case "/bytes", "/chunked":
            guard let count = Self.byteCount(query["n"]) else {
                return respond(&connection, head: head, status: 400, body: Array("n must be a whole number from 0 to \(Self.maxByteCount)\n".utf8))
            }
            guard path == "/chunked" else {
                var response = HTTPResponseHead(status: 200)
                response.headers.add(name: "X-Backend", value: name)
                response.headers.add(name: "Content-Type", value: "text/plain")
                response.headers.add(name: "Content-Length", value: String(count))
                if !head.keepAlive { response.headers.add(name: "Connection", value: "close") }
                var bytes: [UInt8] = []
                response.write(into: &bytes)
                guard connection.write(bytes) else { return false }
                return head.method == "HEAD" || connection.writeRepeated(UInt8(ascii: "x"), count: count)
            }
            let chunks = max(1, Int(query["chunks"] ?? "") ?? 4)
            connection.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Backend: \(name)\r\n\r\n")
            var left = count
            for i in 0..<chunks where left > 0 {
                let size = i == chunks - 1 ? left : min(left, count / chunks)
                guard connection.write(String(size, radix: 16) + "\r\n"), connection.writeRepeated(UInt8(ascii: "c"), count: size), connection.write("\r\n") else {
                    return false
                }
                left -= size
            }
            connection.write("0\r\n\r\n")
            return true
        case "/status":
            let code = Int(query["code"] ?? "") ?? 200
            return respond(&connection, head: head, status: code, body: Array("\(name) status \(code)\n".utf8))
        case "/headers":
            return respond(&connection, head: head, status: 200, body: rawHead)
        default:
            return respond(&connection, head: head, status: 200, body: Array("\(name)\n".utf8))
        }
    }

    /// Whether this answer is one of the `fail_ratio` share: the n-th request fails when n × ratio
    /// crosses a whole number, so any run of requests has the ratio to within one.
    private func isFaulty() -> Bool {
        let perMillion = failPerMillion.load(ordering: .relaxed)
        guard perMillion > 0 else { return false }
        let n = faultCount.wrappingAdd(1, ordering: .relaxed).oldValue
        return (n + 1) * perMillion / 1_000_000 > n * perMillion / 1_000_000
    }

    /// The largest `n` of `/bytes` and `/chunked`: bodies are streamed from one small buffer, so
    /// this bounds only how long one request may keep a thread busy.
    static let maxByteCount = 1 << 36  // 64 GiB

    /// `n` of `/bytes` and `/chunked` (1024 when absent); `nil` when it is not a count in range.
    static func byteCount(_ text: String?) -> Int? {
        guard let text else { return 1024 }
        guard let count = Int(text), (0...maxByteCount).contains(count) else { return nil }
        return count
    }

    private func respond(_ connection: inout BlockingConnection, head: HTTPRequestHead, status: Int, body: [UInt8]) -> Bool {
        var response = HTTPResponseHead(status: status)
        response.headers.add(name: "X-Backend", value: name)
        response.headers.add(name: "Content-Type", value: "text/plain")
        let bodyless = head.method == "HEAD" || status == 204 || status == 304
        if status != 204 { response.headers.add(name: "Content-Length", value: String(body.count)) }
        if !head.keepAlive { response.headers.add(name: "Connection", value: "close") }
        var bytes: [UInt8] = []
        response.write(into: &bytes)
        if !bodyless { bytes.append(contentsOf: body) }
        return connection.write(bytes)
    }

    private func splitTarget(_ target: String) -> (String, [String: String]) {
        guard let mark = target.firstIndex(of: "?") else { return (target, [:]) }
        var query: [String: String] = [:]
        for pair in target[target.index(after: mark)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            query[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        return (String(target[..<mark]), query)
    }
}

/// Blocking reads and writes with a leftover buffer, for `SampleBackend`'s threads.
struct BlockingConnection {
    let fd: Int32
    var buffered: [UInt8] = []

    init(fd: Int32) { self.fd = fd }

    private mutating func fill() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return false }
        buffered.append(contentsOf: chunk[0..<n])
        return true
    }

    mutating func readHead() -> (HTTPRequestHead, [UInt8])? {
        while true {
            let parsed = buffered.withUnsafeBytes { try? HTTPParser.parseRequestHead($0, limits: HTTPHeadLimits()) }
            switch parsed {
            case .complete(let head, let length)?:
                let raw = Array(buffered[0..<length])
                buffered.removeFirst(length)
                return (head, raw)
            case .incomplete?:
                guard fill() else { return nil }
            case nil:
                write("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return nil
            }
        }
    }

    /// The body as received on the wire (chunked bodies keep their framing).
    mutating func readBody(_ framing: BodyFraming) -> [UInt8] {
        switch framing {
        case .none, .untilClose:
            return []
        case .contentLength(let length):
            while buffered.count < Int(length) { guard fill() else { break } }
            let take = min(Int(length), buffered.count)
            defer { buffered.removeFirst(take) }
            return Array(buffered[0..<take])
        case .chunked:
            var scanner = ChunkedBodyScanner()
            var body: [UInt8] = []
            while true {
                let result = buffered.withUnsafeBytes { try? scanner.scan($0) }
                guard let (consumed, finished) = result else { return body }
                body.append(contentsOf: buffered[0..<consumed])
                buffered.removeFirst(consumed)
                if finished { return Self.dechunk(body) }
                guard fill() else { return body }
            }
        }
    }

    /// Decodes a complete, already validated chunked body.
    private static func dechunk(_ raw: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var index = 0
        while index < raw.count {
            guard let lineEnd = raw[index...].firstIndex(of: UInt8(ascii: "\n")) else { break }
            let sizeText = String(decoding: raw[index..<lineEnd], as: UTF8.self).split(separator: ";")[0].trimmingCharacters(in: .whitespacesAndNewlines)
            let size = Int(sizeText, radix: 16) ?? 0
            index = lineEnd + 1
            if size == 0 { break }
            out.append(contentsOf: raw[index..<min(raw.count, index + size)])
            index += size + 2
        }
        return out
    }

    @discardableResult
    func write(_ text: String) -> Bool { write(Array(text.utf8)) }

    @discardableResult
    func write(_ bytes: [UInt8]) -> Bool { ControlSocket.sendAll(fd, bytes) }

    /// Sends `count` copies of `byte` from one 64 KiB buffer (a `/bytes?n=10000000000` once took
    /// 10 GB of memory when built whole); false when the peer is gone.
    func writeRepeated(_ byte: UInt8, count: Int) -> Bool {
        let block = [UInt8](repeating: byte, count: min(count, 65_536))
        var left = count
        while left > 0 {
            let size = min(left, block.count)
            let sent = size == block.count ? write(block) : write(Array(block[0..<size]))
            guard sent else { return false }
            left -= size
        }
        return true
    }

    mutating func echoUntilClosed() {
        if !buffered.isEmpty {
            write(buffered)
            buffered = []
        }
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return }
            guard write(Array(chunk[0..<n])) else { return }
        }
    }
}
