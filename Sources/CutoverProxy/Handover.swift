import CShims
import CutoverControl
import CutoverCore
import Dispatch
import Foundation
import Glibc

/// The takeover of a running proxy by a new process (`cutover proxy --config F --takeover`),
/// over a Unix socket beside the admin socket (`ADMIN_SOCKET.takeover`, mode 0600):
///
/// 1. the new process sends `takeover`;
/// 2. the running one writes its state file, then sends its listening sockets themselves
///    (SCM_RIGHTS) with a `HandoverOffer` describing each;
/// 3. the new process starts accepting on them, moves the admin socket to itself (a rename: `ctl`
///    never finds the path missing), and sends `ready`;
/// 4. the old one stops accepting, answers `bye`, and drains as at SIGTERM, following the state
///    file (the successor's now) so that held work is released when the successor resumes it.
///
/// The sockets are shared, not reopened: a connection waiting in an accept queue is accepted by
/// one process or the other, never reset. A new process that fails before `ready` leaves the old
/// one serving as if nothing had happened.
enum Handover {
    /// The handover socket beside `adminSocket`.
    static func path(adminSocket: String) -> String { adminSocket + ".takeover" }

    /// Why a takeover could not be made, for the operator.
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    // MARK: wire helpers (blocking; on the handover threads only)

    static func writeLine(_ fd: Int32, _ line: String) -> Bool {
        let bytes = Array((line + "\n").utf8)
        return bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    /// One line (without its newline), or nil at end of stream, error or timeout.
    static func readLine(_ fd: Int32) -> String? {
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        while bytes.count < 4096 {
            let n = recv(fd, &byte, 1, 0)
            if n < 0 && errno == EINTR { continue }
            guard n == 1 else { return nil }
            if byte == UInt8(ascii: "\n") { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(byte)
        }
        return nil
    }

    static func setTimeout(_ fd: Int32, seconds: Int) {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }
}

/// The running proxy's side: accepts one successor at a time on the handover socket.
final class HandoverServer: @unchecked Sendable {  // `fd` and `inode` are set in init; the thread owns the rest
    private let path: String
    private let fd: Int32
    private let inode: ino_t
    private let runtime: ProxyRuntime
    /// Runs once a successor said `ready`: stop the admin socket, drain and exit.
    private let handedOver: @Sendable () -> Void

    init(adminSocket: String, runtime: ProxyRuntime, handedOver: @escaping @Sendable () -> Void) throws {
        path = Handover.path(adminSocket: adminSocket)
        (fd, inode) = try AdminSocketServer.bindUnix(path: path, mode: 0o600, group: nil, backlog: 4)
        self.runtime = runtime
        self.handedOver = handedOver
        Thread { [self] in acceptLoop() }.start()
    }

    private func acceptLoop() {
        while true {
            let client = accept(fd, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            Handover.setTimeout(client, seconds: 30)
            let done = serve(client)
            close(client)
            if done {
                close(fd)  // the successor bound the path already; the old socket just goes
                return
            }
        }
    }

    /// One takeover attempt; true when it succeeded (this process hands over and stops).
    private func serve(_ client: Int32) -> Bool {
        guard let line = Handover.readLine(client), line.hasPrefix("takeover") else { return false }
        let (offer, fds) = runtime.handoverOffer()
        let payload = Array(JSONCoding.line(offer).utf8)
        let sent = fds.withUnsafeBufferPointer { fdBuffer in
            payload.withUnsafeBytes { cshims_send_fds(client, fdBuffer.baseAddress, Int32(fdBuffer.count), $0.baseAddress, $0.count) }
        }
        guard sent == payload.count else {
            Log.warning("takeover: could not hand the sockets over: \(String(cString: strerror(errno))); still serving")
            return false
        }
        Log.info("takeover: \(fds.count) listening sockets offered to a new process; waiting for it to serve")
        guard let answer = Handover.readLine(client), answer.hasPrefix("ready") else {
            Log.warning("takeover: the new process went away before it was ready; still serving")
            return false
        }
        Log.info("takeover: the new process serves (\(answer)); this one stops accepting and drains")
        handedOver()
        _ = Handover.writeLine(client, "bye")
        return true
    }

    /// Removes the handover socket (at exit, unless a successor bound the path since).
    func stop() {
        AdminSocketServer.unlinkIfOurs(path, inode: inode)
    }
}

/// The new process's side of a takeover.
final class HandoverClient {
    private let fd: Int32
    /// What the running proxy offered, and its sockets in the same order.
    let offer: HandoverOffer
    let sockets: [Int32]

    /// Connects to the running proxy behind `adminSocket` and receives its sockets.
    init(adminSocket: String) throws {
        let path = Handover.path(adminSocket: adminSocket)
        guard var address = ControlSocket.unixAddress(path) else { throw Handover.Failure(description: "takeover: path too long: \(path)") }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw Handover.Failure(description: "takeover: no running proxy answers on \(path) (\(reason)); start without --takeover")
        }
        Handover.setTimeout(fd, seconds: 30)
        guard Handover.writeLine(fd, "takeover \(CutoverVersion.string)") else {
            close(fd)
            throw Handover.Failure(description: "takeover: \(path): \(String(cString: strerror(errno)))")
        }
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var descriptors = [Int32](repeating: -1, count: 64)
        var count: Int32 = 0
        let received = buffer.withUnsafeMutableBytes { bytes in
            descriptors.withUnsafeMutableBufferPointer { cshims_recv_fds(fd, $0.baseAddress, Int32($0.count), &count, bytes.baseAddress, bytes.count) }
        }
        let sockets = Array(descriptors.prefix(Int(count)))
        guard received > 0, let offer = try? JSONCoding.decode(HandoverOffer.self, from: String(decoding: buffer.prefix(received), as: UTF8.self)),
              offer.sockets.count == sockets.count else {
            for socket in sockets { close(socket) }
            close(fd)
            throw Handover.Failure(description: "takeover: the running proxy sent no usable offer")
        }
        self.fd = fd
        self.offer = offer
        self.sockets = sockets
    }

    /// Tells the old process this one serves; returns once it stopped accepting (or went away).
    func ready() {
        _ = Handover.writeLine(fd, "ready pid \(getpid())")
        _ = Handover.readLine(fd)  // "bye"
        close(fd)
    }

    /// Gives up before serving: the old process keeps everything.
    func abandon() {
        close(fd)
        for socket in sockets { close(socket) }
    }
}

extension ProxyRuntime {
    /// The offer for a successor: the state file written first (the successor starts from it),
    /// then every listening socket.
    func handoverOffer() -> (HandoverOffer, [Int32]) {
        controlQueue.sync {
            persistState()
            var sockets: [HandoverOffer.Socket] = []
            var fds: [Int32] = []
            for listener in listeners {
                sockets.append(.init(kind: "listener", name: listener.config.name, host: listener.config.address.host, port: listener.boundPort,
                                     mode: listener.config.mode.rawValue))
                fds.append(listener.fd)
            }
            if let admin = adminHTTPSocket {
                sockets.append(.init(kind: "admin_http", name: "admin_http", host: admin.host, port: admin.port, mode: nil))
                fds.append(admin.fd)
            }
            return (HandoverOffer(pid: getpid(), version: CutoverVersion.string, generation: processGeneration, sockets: sockets), fds)
        }
    }

    /// Records that this process took over from a predecessor of `generation` (`show stats`).
    func tookOver(fromGeneration generation: Int) {
        controlQueue.sync {
            processGeneration = generation + 1
            tookOverAt = Date()
        }
    }

    /// After a handover: stop writing the state file (it is the successor's), drain as at SIGTERM,
    /// and meanwhile follow the state file, so work held here (a pause, a read-only hold) is
    /// released, in arrival order, when the successor resumes it.
    func drainForSuccessor(done: @escaping @Sendable () -> Void) {
        controlQueue.sync { handedOver = true }
        followStateFile(last: nil)
        shutdown(done: done)
    }

    private func followStateFile(last: RuntimeState?) {
        controlQueue.asyncAfter(deadline: .now() + .milliseconds(100)) { [self] in
            var seen = last
            if let stateFile, let saved = try? stateFile.read() {
                let next = saved.reconciled(with: config)
                if next != seen {
                    seen = next
                    runtime = next
                    publish(persist: false)
                }
            }
            followStateFile(last: seen)
        }
    }
}
