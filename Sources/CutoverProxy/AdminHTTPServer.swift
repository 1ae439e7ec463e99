import CutoverCore
import Foundation
import Glibc
import Synchronization

/// The admin HTTP listener's transport: a small blocking HTTP/1.1 server for a few clients
/// (Prometheus, an outer load balancer, a browser), one thread per connection, requests parsed with
/// the strict `HTTPParser`.
///
/// It knows nothing of routes: every request that passes the bearer-token check goes to `handler`.
/// Like the proxy's listeners it lives as long as the process (its accept thread holds it).
final class AdminHTTPServer: Sendable {
    /// A request the handler sees: method, path without query, and the parsed head.
    struct Request: Sendable {
        let method: String
        let path: String
        let head: HTTPRequestHead
    }

    /// What the handler answers; the server adds framing, `Connection` and `Cache-Control`.
    struct Response: Sendable {
        var status: Int
        var contentType: String
        var body: [UInt8]
        var headers: [(String, String)] = []
        /// A body written as it happens (`/events`) instead of `body`: the server sends the head,
        /// then calls this with a `send` that returns false once the client is gone, then closes.
        var stream: (@Sendable (_ send: (String) -> Bool) -> Void)?

        init(status: Int, contentType: String = "text/plain; charset=utf-8", body: String, headers: [(String, String)] = []) {
            self.status = status
            self.contentType = contentType
            self.body = Array(body.utf8)
            self.headers = headers
        }
    }

    /// The bound port (a configured port 0 becomes a real one).
    let port: UInt16
    private let fd: Int32
    private let token: String?
    private let handler: @Sendable (Request) -> Response
    private let openConnections = Atomic<Int>(0)
    /// Admin clients are few; past this many, new connections are closed at once.
    static let maxConnections = 32
    /// An idle keep-alive connection (or a slow client) gives its thread back after this long.
    static let idleSeconds = 10

    /// Binds `address` and starts accepting on a background thread.
    ///
    /// - Parameter token: when set, every request needs `Authorization: Bearer TOKEN` (else 401).
    init(address: HostPort, token: String?, handler: @escaping @Sendable (Request) -> Response) throws {
        let fd = try Socket.listen(on: address, backlog: 64)
        _ = fcntl(fd, F_SETFL, 0)  // blocking accept on a dedicated thread
        self.fd = fd
        self.port = Socket.localPort(fd)
        self.token = token
        self.handler = handler
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "cutover.admin.http"
        thread.start()
    }

    private func acceptLoop() {
        while true {
            let client = accept(fd, nil, nil)
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED || errno == EMFILE { continue }
                Log.error("admin http: accept: \(String(cString: strerror(errno))); the admin listener stops")
                return
            }
            if openConnections.wrappingAdd(1, ordering: .relaxed).newValue > Self.maxConnections {
                openConnections.wrappingSubtract(1, ordering: .relaxed)
                close(client)
                continue
            }
            var timeout = timeval(tv_sec: Self.idleSeconds, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let thread = Thread { [self] in serve(client) }
            thread.start()
        }
    }

    private func serve(_ client: Int32) {
        defer {
            close(client)
            openConnections.wrappingSubtract(1, ordering: .relaxed)
        }
        var connection = BlockingConnection(fd: client)
        while let (head, _) = connection.readHead() {
            // No route reads a body; a small one is consumed to keep the framing, anything else refused.
            switch try? head.bodyFraming() {
            case .none?:
                break
            case .contentLength(let length)? where length <= 65_536:
                _ = connection.readBody(.contentLength(length))
            case nil:
                connection.write(Self.serialize(Response(status: 400, body: "bad request framing\n"), head: head, keepAlive: false))
                return
            case .contentLength?, .chunked?, .untilClose?:
                connection.write(Self.serialize(Response(status: 413, body: "the admin listener takes no request bodies\n"), head: head, keepAlive: false))
                return
            }
            let response = authorized(head) ? route(head) : Self.unauthorized
            if let stream = response.stream, head.method == "GET" {
                var streamed = response
                streamed.headers.append(("X-Accel-Buffering", "no"))
                guard connection.write(Self.serialize(streamed, head: head, keepAlive: false, streaming: true)) else { return }
                stream { connection.write(Array($0.utf8)) }
                return
            }
            guard connection.write(Self.serialize(response, head: head, keepAlive: head.keepAlive)), head.keepAlive else { return }
        }
    }

    private func route(_ head: HTTPRequestHead) -> Response {
        guard head.method == "GET" || head.method == "HEAD" else {
            return Response(status: 405, body: "only GET and HEAD are served here\n", headers: [("Allow", "GET, HEAD")])
        }
        let path = head.target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? head.target
        return handler(Request(method: head.method, path: path, head: head))
    }

    static let unauthorized = Response(
        status: 401, body: "a bearer token is required: Authorization: Bearer TOKEN\n", headers: [("WWW-Authenticate", "Bearer realm=\"cutover\"")])

    /// Whether the request carries the configured token (always true without one).
    private func authorized(_ head: HTTPRequestHead) -> Bool {
        guard let token else { return true }
        guard let field = head.headers["Authorization"] else { return false }
        let parts = field.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return false }
        return Self.constantTimeEqual(Array(parts[1].trimmingCharacters(in: .whitespaces).utf8), Array(token.utf8))
    }

    /// Compares without stopping at the first difference, so timing does not reveal the token.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(a.count == b.count ? 0 : 1)
        for index in 0..<max(a.count, b.count) {
            difference |= (index < a.count ? a[index] : 0) ^ (index < b.count ? b[index] : 0)
        }
        return difference == 0
    }

    /// The response's bytes; a `streaming` one has no length (its body runs until the connection closes).
    static func serialize(_ response: Response, head: HTTPRequestHead, keepAlive: Bool, streaming: Bool = false) -> [UInt8] {
        var responseHead = HTTPResponseHead(status: response.status)
        responseHead.headers.add(name: "Content-Type", value: response.contentType)
        if !streaming { responseHead.headers.add(name: "Content-Length", value: String(response.body.count)) }
        responseHead.headers.add(name: "Cache-Control", value: "no-store")
        for (name, value) in response.headers { responseHead.headers.add(name: name, value: value) }
        if !keepAlive { responseHead.headers.add(name: "Connection", value: "close") }
        var bytes: [UInt8] = []
        responseHead.write(into: &bytes)
        if head.method != "HEAD" { bytes.append(contentsOf: response.body) }
        return bytes
    }
}
