import CutoverControl
import CutoverCore
import Foundation
import Glibc
import Synchronization

/// The admin HTTP listener's transport: a small HTTP/1.1 server for a few clients (Prometheus, an
/// outer load balancer, a browser) on an `AdminSessionLoop` — one readiness loop and a few answer
/// threads, a read timeout, a cap on sessions — with requests parsed by the strict `HTTPParser`.
///
/// It knows nothing of routes: every request that passes the bearer-token check goes to `handler`.
/// Like the proxy's listeners it lives as long as the process (its loop thread holds it).
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
        /// A body written as it happens (`/events`) instead of `body`: after the head (no length,
        /// `Connection: close`) this runs on a thread of its own with a `send` that returns false
        /// once the client is gone.
        var stream: (@Sendable (_ send: (String) -> Bool) -> Void)?

        init(status: Int, contentType: String = "text/plain; charset=utf-8", body: String, headers: [(String, String)] = []) {
            self.status = status
            self.contentType = contentType
            self.body = Array(body.utf8)
            self.headers = headers
        }
    }

    /// The bound port (a configured port 0 becomes a real port).
    let port: UInt16
    /// The listening socket (handed to a successor in a takeover).
    let listenFD: Int32
    private let token: String?
    private let handler: @Sendable (Request) -> Response
    private let loop: AdminSessionLoop<HTTPRequestHead>

    /// Binds `address` and starts serving on its own threads.
    ///
    /// - Parameter token: when set, every request needs `Authorization: Bearer TOKEN` (else 401).
    /// - Parameter adopting: a socket already listening (taken over from the previous process).
    init(address: HostPort, adopting: Int32? = nil, token: String?, limits: AdminSessionLimits = .init(),
         handler: @escaping @Sendable (Request) -> Response) throws {
        let fd = try adopting ?? Socket.listen(on: address, backlog: 64)
        self.listenFD = fd
        self.port = Socket.localPort(fd)
        self.token = token
        self.handler = handler
        let busy = Response(status: 503, body: "the admin listener is busy: \(limits.executors) requests are being answered; try again\n", headers: [("Retry-After", "1")])
        loop = AdminSessionLoop(
            name: "cutover.admin.http", listenFD: fd, limits: limits,
            refusals: .init(busy: Self.serialize(busy, method: "GET", keepAlive: false), timedOut: nil),
            frame: Self.frameRequest, answer: { head in Self.answer(head, token: token, handler: handler) })
        loop.start()
    }

    /// The answer to one framed request (static: the loop is made before `self` exists).
    private static func answer(
        _ head: HTTPRequestHead, token: String?, handler: @Sendable (Request) -> Response
    ) -> AdminSessionLoop<HTTPRequestHead>.Answer {
        let response = authorized(head, token: token) ? route(head, handler: handler) : unauthorized
        if let stream = response.stream, head.method == "GET" {
            return .init(bytes: Self.serialize(response, method: head.method, keepAlive: false, streaming: true), keepOpen: false) { fd in
                defer { close(fd) }
                stream { ControlSocket.sendAll(fd, Array($0.utf8)) }
            }
        }
        return .init(bytes: Self.serialize(response, method: head.method, keepAlive: head.keepAlive), keepOpen: head.keepAlive)
    }

    /// One request at the start of `bytes`: its head and, when small, its body (no route reads a
    /// body; a small one is consumed to keep the framing, anything else is refused).
    static func frameRequest(_ bytes: [UInt8]) -> AdminSessionLoop<HTTPRequestHead>.Framing {
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(HTTPParseError) in try HTTPParser.parseRequestHead(raw, limits: HTTPHeadLimits()) }
        }
        let parsed: HeadParse<HTTPRequestHead>
        switch result {
        case .success(let head):
            parsed = head
        case .failure(let error):
            return .refuse(serialize(Response(status: error.status, body: "bad request: \(error)\n"), method: "GET", keepAlive: false))
        }
        guard case .complete(let head, let headLength) = parsed else { return .incomplete }
        switch try? head.bodyFraming() {
        case .none?:
            return .request(head, consumed: headLength)
        case .contentLength(let length)? where length <= 65_536:
            return bytes.count - headLength >= Int(length) ? .request(head, consumed: headLength + Int(length)) : .incomplete
        case nil:
            return .refuse(serialize(Response(status: 400, body: "bad request framing\n"), method: head.method, keepAlive: false))
        case .contentLength?, .chunked?, .untilClose?:
            return .refuse(serialize(Response(status: 413, body: "the admin listener takes no request bodies\n"), method: head.method, keepAlive: false))
        }
    }

    private static func route(_ head: HTTPRequestHead, handler: @Sendable (Request) -> Response) -> Response {
        guard head.method == "GET" || head.method == "HEAD" else {
            return Response(status: 405, body: "only GET and HEAD are served here\n", headers: [("Allow", "GET, HEAD")])
        }
        let path = head.target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? head.target
        return handler(Request(method: head.method, path: path, head: head))
    }

    static let unauthorized = Response(
        status: 401, body: "a bearer token is required: Authorization: Bearer TOKEN\n", headers: [("WWW-Authenticate", "Bearer realm=\"cutover\"")])

    /// Whether the request carries the configured token (always true without one).
    private static func authorized(_ head: HTTPRequestHead, token: String?) -> Bool {
        guard let token else { return true }
        guard let field = head.headers["Authorization"] else { return false }
        let parts = field.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return false }
        return constantTimeEqual(Array(parts[1].trimmingCharacters(in: .whitespaces).utf8), Array(token.utf8))
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
    static func serialize(_ response: Response, method: String, keepAlive: Bool, streaming: Bool = false) -> [UInt8] {
        var responseHead = HTTPResponseHead(status: response.status)
        responseHead.headers.add(name: "Content-Type", value: response.contentType)
        if !streaming { responseHead.headers.add(name: "Content-Length", value: String(response.body.count)) }
        responseHead.headers.add(name: "Cache-Control", value: "no-store")
        for (name, value) in response.headers { responseHead.headers.add(name: name, value: value) }
        if !keepAlive { responseHead.headers.add(name: "Connection", value: "close") }
        var bytes: [UInt8] = []
        responseHead.write(into: &bytes)
        if method != "HEAD" { bytes.append(contentsOf: response.body) }
        return bytes
    }
}
