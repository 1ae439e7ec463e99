import CutoverCore
import Foundation
import Glibc
import Synchronization

/// A small blocking client for etcd's v3 JSON gateway: one HTTP/1.1 POST per call on a fresh
/// loopback-or-LAN connection, members tried in order starting from the last one that answered.
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
    /// The index of the member that answered last (tried first).
    private let preferred = Mutex(0)

    init(members: [EtcdMember]) {
        self.members = members
    }

    /// POSTs `request` to `path` and decodes the answer; tries each member once.
    func call<Request: Encodable, Answer: Decodable>(_ path: String, _ request: Request, as: Answer.Type, timeout: Duration = .seconds(2)) throws(Failure) -> Answer {
        let body = Self.encode(request)
        var reasons: [String] = []
        var notFound = false
        for member in orderedMembers() {
            do {
                let connection = try Connection(member: member, timeout: timeout)
                defer { connection.close() }
                let (status, payload) = try connection.exchange(path: path, body: body)
                guard status == 200 else {
                    let error = try? EtcdJSON.decoder.decode(EtcdError.self, from: Data(payload))
                    if error?.code == 5 { notFound = true }
                    reasons.append("\(member): HTTP \(status) \(error?.message ?? error?.error ?? String(decoding: payload.prefix(200), as: UTF8.self))")
                    continue  // a member without quorum answers 503; another may have it
                }
                do {
                    let answer = try EtcdJSON.decoder.decode(Answer.self, from: Data(payload))
                    remember(member)
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

    /// POSTs `request` to a streaming `path` (`/v3/watch`) and hands each message to `message`
    /// until it returns false, the stream ends or the connection fails (thrown). No read timeout:
    /// a quiet watch is normal, and a member that dies closes the connection.
    func stream(_ path: String, _ request: some Encodable, message: ([UInt8]) -> Bool) throws(Failure) {
        let body = Self.encode(request)
        var reasons: [String] = []
        for member in orderedMembers() {
            do {
                let connection = try Connection(member: member, timeout: .seconds(2))
                defer { connection.close() }
                connection.clearReadTimeout()
                try connection.send(path: path, body: body)
                let (status, remainder, framing) = try connection.readHead()
                guard status == 200, framing == .chunked else {
                    reasons.append("\(member): HTTP \(status) on \(path)")
                    continue
                }
                remember(member)
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

    private func orderedMembers() -> [EtcdMember] {
        let start = preferred.withLock { $0 }
        return Array(members[start...] + members[..<start])
    }

    private func remember(_ member: EtcdMember) {
        if let index = members.firstIndex(of: member) { preferred.withLock { $0 = index } }
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

    init(member: EtcdMember, timeout: Duration) throws {
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
    }

    func close() { Glibc.close(fd) }

    func clearReadTimeout() {
        var none = timeval(tv_sec: 0, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(path: String, body: [UInt8]) throws {
        let head = "POST \(path) HTTP/1.1\r\nHost: \(member.host):\(member.port)\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        var bytes = Array(head.utf8) + body
        while !bytes.isEmpty {
            let sent = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { throw Failure(description: "send: \(String(cString: strerror(errno)))") }
            bytes.removeFirst(sent)
        }
    }

    /// Up to 64 KiB received; empty at the end of the stream. A timeout throws.
    func readSome() throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 65_536)
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
    func exchange(path: String, body: [UInt8]) throws -> (status: Int, body: [UInt8]) {
        try send(path: path, body: body)
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
