import CutoverCore
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The proxy's own gates, `maintenance` or `readonly`, switched over its admin Unix socket.
public struct ProxyFlag: FlagDriver {
    /// The two gates the proxy has (DESIGN.md "Maintenance and read-only gates").
    public enum Gate: String, Sendable, CaseIterable {
        case maintenance
        case readonly
    }

    public let socketPath: String
    public let profile: String
    public let gate: Gate
    /// Bound on connect, send and each read.
    public var timeout: Duration = .seconds(5)

    public init(socketPath: String, profile: String, gate: Gate) {
        self.socketPath = socketPath
        self.profile = profile
        self.gate = gate
    }

    public var kind: String { "proxy" }
    public var target: String { "proxy \(gate.rawValue) \(profile)" }

    public func on() throws(FlagError) -> FlagResult { try set("on") }
    public func off() throws(FlagError) -> FlagResult { try set("off") }

    /// The proxy has no per-gate status command yet: reports the raw answer of `show profiles`.
    public func status() throws(FlagError) -> FlagResult {
        let answer = try AdminLine.exchange(socketPath, "show profiles", timeout: timeout, wholeAnswer: true)
        if let error = AdminLine.error(in: answer) { throw error }
        return FlagResult(driver: kind, target: target, action: "status", state: "unknown", detail: answer.trimmingWhitespace())
    }

    private func set(_ state: String) throws(FlagError) -> FlagResult {
        let answer = try AdminLine.exchange(socketPath, "\(gate.rawValue) \(profile) \(state)", timeout: timeout, wholeAnswer: false)
        if let error = AdminLine.error(in: answer) { throw error }
        guard answer.hasPrefix("OK") else {
            throw .proxyRefused(code: "bad-answer", message: "unexpected answer \"\(answer)\"")
        }
        return FlagResult(driver: kind, target: target, action: state, state: state, detail: answer)
    }
}

/// One request/answer exchange on a line-oriented admin Unix socket (`OK …` / `ERR <code>: <message>`).
enum AdminLine {
    /// `ERR code: message` as a FlagError, `nil` for anything else.
    static func error(in answer: String) -> FlagError? {
        guard answer.hasPrefix("ERR") else { return nil }
        let rest = answer.dropFirst(3).drop { $0 == " " }
        guard let colon = rest.firstIndex(of: ":") else { return .proxyRefused(code: "error", message: String(rest)) }
        return .proxyRefused(code: String(rest[..<colon]), message: String(rest[rest.index(after: colon)...]).trimmingWhitespace())
    }

    /// Sends `command` and a newline; returns the first line, or everything until EOF when `wholeAnswer`.
    static func exchange(_ path: String, _ command: String, timeout: Duration, wholeAnswer: Bool) throws(FlagError) -> String {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .proxyUnreachable(socket: path, message: String(cString: strerror(errno))) }
        defer { close(fd) }
        var tv = timeval(tv_sec: Int(timeout.milliseconds / 1000), tv_usec: Int(timeout.milliseconds % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw .proxyUnreachable(socket: path, message: "socket path too long")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { throw .proxyUnreachable(socket: path, message: String(cString: strerror(errno))) }
        let request = Array((command + "\n").utf8)
        var sent = 0
        while sent < request.count {
            let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .proxyUnreachable(socket: path, message: "send: \(String(cString: strerror(errno)))")
            }
            sent += n
        }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while answer.count < 1 << 20 {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                if (errno == EAGAIN || errno == EWOULDBLOCK) && wholeAnswer && !answer.isEmpty { break }
                throw .proxyUnreachable(socket: path, message: errno == EAGAIN ? "no answer within \(DurationText.format(timeout))" : String(cString: strerror(errno)))
            }
            if n == 0 { break }
            if wholeAnswer && answer.isEmpty {
                // A multi-line answer may not end with EOF: once it started, a short silence ends it.
                var short = timeval(tv_sec: 0, tv_usec: 200_000)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &short, socklen_t(MemoryLayout<timeval>.size))
            }
            answer += buffer[0..<n]
            if !wholeAnswer, let newline = answer.firstIndex(of: UInt8(ascii: "\n")) {
                answer = Array(answer[..<newline])
                break
            }
        }
        if answer.isEmpty { throw .proxyUnreachable(socket: path, message: "the connection closed without an answer") }
        var text = String(decoding: answer, as: UTF8.self)
        if text.hasSuffix("\r") { text.removeLast() }
        return text
    }
}
