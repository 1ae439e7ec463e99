import Dispatch
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A small Unix stream server for the agent: one command per line, one answer line each.
///
/// Blocking accept on its own thread; each client is served on a global queue (commands are
/// serialized inside `AgentService`). A timer gives back expired leases every `leaseCheck`.
// @unchecked: every stored property is a constant; DispatchSourceTimer is thread-safe to cancel.
public final class AgentServer: @unchecked Sendable {
    public let path: String
    private let listener: Int32
    private let service: AgentService
    private let timer: DispatchSourceTimer

    /// Binds `path` (mode 0600, replacing a stale socket file) and starts serving.
    public init(path: String, service: AgentService, leaseCheck: Duration = .seconds(1)) throws {
        self.path = path
        self.service = service
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw AgentCommandError(code: "socket", message: String(cString: strerror(errno))) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(fd)
            throw AgentCommandError(code: "socket", message: "socket path too long: \(path)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let oldMask = umask(0o177)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        umask(oldMask)
        guard bound == 0, listen(fd, 16) == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw AgentCommandError(code: "socket", message: "cannot listen on \(path): \(message)")
        }
        listener = fd
        timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "cutover.agent.leases"))
        timer.schedule(deadline: .now() + leaseCheck.seconds, repeating: leaseCheck.seconds)
        timer.setEventHandler { [service] in _ = service.expireLeases() }
        timer.resume()
        let thread = Thread { [service] in
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 {
                    if errno == EINTR { continue }
                    return
                }
                DispatchQueue.global().async { Self.serve(client, service) }
            }
        }
        thread.start()
    }

    /// Stops accepting and removes the socket file.
    public func stop() {
        timer.cancel()
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        unlink(path)
    }

    private static func serve(_ client: Int32, _ service: AgentService) {
        defer { close(client) }
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(client, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            pending += buffer[0..<n]
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                var line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                if line.hasSuffix("\r") { line.removeLast() }
                if line.trimmingWhitespace().isEmpty { continue }
                let answer = Array((service.handle(line) + "\n").utf8)
                var sent = 0
                while sent < answer.count {
                    let w = answer[sent...].withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    if w < 0 && errno == EINTR { continue }
                    if w <= 0 { return }
                    sent += w
                }
            }
            if pending.count > 1 << 16 { return }
        }
    }
}
