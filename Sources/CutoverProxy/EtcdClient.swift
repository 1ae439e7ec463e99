import COpenSSL
import CutoverCore
import Foundation
import Glibc
import Synchronization

/// A small blocking client for etcd's v3 JSON gateway: one HTTP/1.1 POST per call on a fresh
/// loopback-or-LAN connection (TLS for `https://` members, with the proxy's own OpenSSL client
/// context), members tried in order starting from the last one that answered; with credentials,
/// each member's auth token goes in the `Authorization` header.
///
/// Blocking and unpooled on purpose: fleet calls are a handful per mutation and one per second
/// for the lease, made on the fleet's own threads, never on a worker or the control queue; a
/// connection per call costs ~0.1 ms on loopback and leaves no pooled state to go stale when a
/// member dies.
final class EtcdClient: Sendable {
    /// Why etcd did not answer: every member was tried.
    struct Failure: Error, CustomStringConvertible {
        let reason: String
        /// A member answered gRPC `NotFound` (5), e.g. `requested lease not found`: etcd is there,
        /// the thing asked about is not.
        var notFound = false
        var description: String { reason }
    }

    let members: [EtcdMember]
    /// The TLS context of each `https://` member, by index (`nil` for `http://` ones).
    private let contexts: [TLSClientContext?]
    private let credentials: EtcdCredentials?
    /// The auth token each member gave, by index: a simple token is that member's alone.
    private let tokens = Mutex<[Int: String]>([:])
    /// The index of the member that answered last (tried first).
    private let preferred = Mutex(0)

    /// - Important: reads the TLS files; call at start.
    init(members: [EtcdMember], tls: EtcdTLSConfig? = nil, credentials: EtcdCredentials? = nil) throws(TLSError) {
        self.members = members
        self.credentials = credentials
        let client = tls.flatMap { tls in tls.cert.flatMap { cert in tls.key.map { CertificateFiles(cert: cert, key: $0) } } }
        var contexts: [TLSClientContext?] = []
        for member in members {
            guard member.secure else {
                contexts.append(nil)
                continue
            }
            let upstream = UpstreamTLSConfig(verify: true, ca: tls?.ca, serverName: tls?.serverName)
            contexts.append(try TLSClientContext(config: upstream, endpointHost: member.host, handshakeTimeout: .seconds(2), stats: TLSStats(), clientCertificate: client))
        }
        self.contexts = contexts
    }

    /// POSTs `request` to `path` and decodes the answer; tries each member once.
    func call<Request: Encodable, Answer: Decodable>(_ path: String, _ request: Request, as: Answer.Type, timeout: Duration = .seconds(2)) throws(Failure) -> Answer {
        let body = Self.encode(request)
        var reasons: [String] = []
        var notFound = false
        for index in orderedMembers() {
            let member = members[index]
            do {
                let (status, payload) = try exchange(index, path: path, body: body, timeout: timeout)
                guard status == 200 else {
                    let error = try? EtcdJSON.decoder.decode(EtcdError.self, from: Data(payload))
                    if error?.code == 5 { notFound = true }
                    reasons.append("\(member): HTTP \(status) \(error?.message ?? error?.error ?? String(decoding: payload.prefix(200), as: UTF8.self))")
                    continue  // a member without quorum answers 503; another may have it
                }
                do {
                    let answer = try EtcdJSON.decoder.decode(Answer.self, from: Data(payload))
                    remember(index)
                    return answer
                } catch {
                    reasons.append("\(member): unexpected answer to \(path): \(error)")
                }
            } catch {
                reasons.append("\(member): \(error)")
            }
        }
        throw Failure(reason: reasons.joined(separator: "; "), notFound: notFound)
    }

    /// One unary call to member `index`, with its auth token when etcd wants one; a token the
    /// member no longer takes (expired, or the member restarted) is asked for again, once.
    private func exchange(_ index: Int, path: String, body: [UInt8], timeout: Duration) throws -> (status: Int, body: [UInt8]) {
        for attempt in 0..<2 {
            let token = try token(index, timeout: timeout)
            let connection = try Connection(member: members[index], tls: contexts[index], timeout: timeout)
            let answer = try { defer { connection.close() }; return try connection.exchange(path: path, body: body, token: token) }()
            if answer.status != 200, token != nil, attempt == 0, Self.isAuthFailure(answer.body) {
                tokens.withLock { $0[index] = nil }
                continue
            }
            return answer
        }
        preconditionFailure("the loop returns on its second attempt")
    }

    /// Member `index`'s token, authenticating first when there is none; `nil` without credentials.
    private func token(_ index: Int, timeout: Duration) throws -> String? {
        guard let credentials else { return nil }
        if let token = tokens.withLock({ $0[index] }) { return token }
        let connection = try Connection(member: members[index], tls: contexts[index], timeout: timeout)
        defer { connection.close() }
        let request = Self.encode(EtcdAuthenticateRequest(name: credentials.username, password: credentials.password))
        let (status, payload) = try connection.exchange(path: "/v3/auth/authenticate", body: request, token: nil)
        guard status == 200, let token = (try? EtcdJSON.decoder.decode(EtcdAuthenticateResponse.self, from: Data(payload)))?.token, !token.isEmpty else {
            let error = try? EtcdJSON.decoder.decode(EtcdError.self, from: Data(payload))
            throw Connection.Failure(description: "authentication as \(credentials.username) refused: HTTP \(status) \(error?.message ?? error?.error ?? "")")
        }
        tokens.withLock { $0[index] = token }
        return token
    }

    /// Whether an error answer says the token is not (or no longer) good: gRPC `Unauthenticated`
    /// (16), or etcd's words for a token it does not know.
    private static func isAuthFailure(_ payload: [UInt8]) -> Bool {
        guard let error = try? EtcdJSON.decoder.decode(EtcdError.self, from: Data(payload)) else { return false }
        let text = (error.message ?? error.error ?? "")
        return error.code == 16 || text.contains("auth token") || text.contains("user name is empty")
    }

    /// POSTs `request` to a streaming `path` (`/v3/watch`) and hands each message to `message`
    /// until it returns false, the stream ends or the connection fails (thrown). No read timeout:
    /// a quiet watch is normal, and a member that dies closes the connection.
    func stream(_ path: String, _ request: some Encodable, message: ([UInt8]) -> Bool) throws(Failure) {
        let body = Self.encode(request)
        var reasons: [String] = []
        for index in orderedMembers() {
            let member = members[index]
            do {
                let token = try token(index, timeout: .seconds(2))
                let connection = try Connection(member: member, tls: contexts[index], timeout: .seconds(2))
                defer { connection.close() }
                connection.clearReadTimeout()
                try connection.send(path: path, body: body, token: token)
                let (status, remainder, framing) = try connection.readHead()
                guard status == 200, framing == .chunked else {
                    tokens.withLock { $0[index] = nil }  // perhaps refused for its token: ask anew next time
                    reasons.append("\(member): HTTP \(status) on \(path)")
                    continue
                }
                remember(index)
                var decoder = EtcdStreamDecoder()
                var pending = remainder
                while true {
                    for line in try decoder.feed(pending) where !message(line) { return }
                    if decoder.isFinished { return }
                    pending = try connection.readSome()
                    if pending.isEmpty { throw Failure(reason: "\(member) closed the \(path) stream") }
                }
            } catch let failure as Failure {
                throw failure
            } catch {
                reasons.append("\(member): \(error)")
            }
        }
        throw Failure(reason: reasons.joined(separator: "; "))
    }

    /// The members' indices, from the one that answered last.
    private func orderedMembers() -> [Int] {
        let start = preferred.withLock { $0 }
        return Array(members.indices[start...]) + Array(members.indices[..<start])
    }

    private func remember(_ index: Int) {
        preferred.withLock { $0 = index }
    }

    private static func encode(_ request: some Encodable) -> [UInt8] {
        // The request types hold strings and integers only; they always encode.
        (try? Array(EtcdJSON.encoder.encode(request))) ?? Array("{}".utf8)
    }
}

/// One blocking HTTP/1.1 connection to an etcd member (`Connection: close`, so the body of a
/// unary answer ends at its Content-Length or at the close).
private final class Connection {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    let member: EtcdMember
    private let fd: Int32
    /// The TLS session of an `https://` member.
    private var ssl: OpaquePointer?

    /// Connects (and, with `tls`, shakes hands verifying the member), bounded by `timeout`.
    init(member: EtcdMember, tls: TLSClientContext?, timeout: Duration) throws {
        self.member = member
        let address = try Socket.resolve(HostPort(host: member.host, port: member.port))
        let family = address.withUnsafeBytes { $0.load(as: sa_family_t.self) }
        fd = socket(Int32(family), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        // SO_SNDTIMEO also bounds a blocking connect on Linux.
        var limit = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        Socket.setNoDelay(fd)
        let status = address.withUnsafeBytes { connect(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count)) }
        guard status == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            throw Failure(description: "connect: \(reason)")
        }
        guard let tls else { return }
        // Blocking, bounded by the socket timeouts set above.
        guard let ssl = tls.makeSSL(fd: fd) else {
            Glibc.close(fd)
            throw Failure(description: "TLS: cannot create a session")
        }
        self.ssl = ssl
        ERR_clear_error()
        guard SSL_connect(ssl) == 1 else {
            let reason = TLSClientContext.failureReason(ssl, queued: TLSError.drainReason(fallback: "handshake failed or timed out"))
            close()
            throw Failure(description: "TLS handshake: \(reason)")
        }
    }

    func close() {
        if let ssl { SSL_free(ssl) }
        ssl = nil
        Glibc.close(fd)
    }

    func clearReadTimeout() {
        var none = timeval(tv_sec: 0, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Sends the POST; `token` (etcd auth) goes in the `Authorization` header.
    func send(path: String, body: [UInt8], token: String?) throws {
        let authorization = token.map { "Authorization: \($0)\r\n" } ?? ""
        let head = "POST \(path) HTTP/1.1\r\nHost: \(member.host):\(member.port)\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\(authorization)Connection: close\r\n\r\n"
        var bytes = Array(head.utf8) + body
        while !bytes.isEmpty {
            let sent: Int
            if let ssl {
                ERR_clear_error()
                sent = Int(bytes.withUnsafeBytes { SSL_write(ssl, $0.baseAddress, Int32($0.count)) })
            } else {
                sent = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            }
            guard sent > 0 else { throw Failure(description: "send: \(ssl == nil ? String(cString: strerror(errno)) : TLSError.drainReason(fallback: "TLS write failed"))") }
            bytes.removeFirst(sent)
        }
    }

    /// Up to 64 KiB received; empty at the end of the stream. A timeout throws.
    func readSome() throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        if let ssl {
            ERR_clear_error()
            errno = 0
            let count = buffer.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, Int32($0.count)) }
            if count > 0 { return Array(buffer[..<Int(count)]) }
            let code = SSL_get_error(ssl, count)
            if code == SSL_ERROR_ZERO_RETURN || (code == SSL_ERROR_SYSCALL && errno == 0) { return [] }
            if errno == EAGAIN || errno == EWOULDBLOCK { throw Failure(description: "no answer in time") }
            throw Failure(description: "TLS read: \(TLSError.drainReason(fallback: "failed"))")
        }
        let count = buffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
        guard count >= 0 else {
            throw Failure(description: errno == EAGAIN || errno == EWOULDBLOCK ? "no answer in time" : "recv: \(String(cString: strerror(errno)))")
        }
        return Array(buffer[..<count])
    }

    /// The status, the body bytes read past the head, and the body's framing.
    func readHead() throws -> (status: Int, remainder: [UInt8], framing: BodyFraming) {
        var received: [UInt8] = []
        while true {
            let more = try readSome()
            guard !more.isEmpty else { throw Failure(description: "closed before the answer's head") }
            received += more
            let parsed = try received.withUnsafeBytes { try HTTPParser.parseResponseHead($0, limits: HTTPHeadLimits()) }
            if case .complete(let head, let length) = parsed {
                return (head.status, Array(received[length...]), try head.bodyFraming(requestMethod: "POST"))
            }
        }
    }

    /// Sends the request and reads a whole unary answer (for a chunked one, its first message).
    func exchange(path: String, body: [UInt8], token: String?) throws -> (status: Int, body: [UInt8]) {
        try send(path: path, body: body, token: token)
        var (status, payload, framing) = try readHead()
        switch framing {
        case .none:
            return (status, [])
        case .contentLength(let length):
            while payload.count < Int(length) {
                let more = try readSome()
                guard !more.isEmpty else { throw Failure(description: "closed inside the answer") }
                payload += more
            }
            return (status, Array(payload.prefix(Int(length))))
        case .chunked:
            // `/v3/lease/keepalive` streams: its first message is the answer to our one request.
            var decoder = EtcdStreamDecoder()
            while true {
                if let first = try decoder.feed(payload).first { return (status, first) }
                guard !decoder.isFinished else { return (status, []) }
                payload = try readSome()
                guard !payload.isEmpty else { throw Failure(description: "closed inside the answer") }
            }
        case .untilClose:
            while true {
                let more = try readSome()
                if more.isEmpty { return (status, payload) }
                payload += more
            }
        }
    }
}
