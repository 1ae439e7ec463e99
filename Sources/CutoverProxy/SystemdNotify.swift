import Foundation
import Glibc

/// The `sd_notify` protocol, without libsystemd: one datagram of `KEY=VALUE` lines to the socket
/// named by `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace).
///
/// Under `Type=notify` systemd counts the proxy as started only once it said `READY=1`, after the
/// listeners and the admin socket are open, so `systemctl start` returns when the proxy serves; a
/// reload says `RELOADING=1` then `READY=1`, and shutdown says `STOPPING=1`. Without the
/// variable (not under systemd) every call does nothing.
enum SystemdNotify {
    /// Sends `state` (e.g. `READY=1`); failures are ignored, as `sd_notify` callers do.
    static func send(_ state: String) {
        guard let path = ProcessInfo.processInfo.environment["NOTIFY_SOCKET"], path.count > 1 else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let name = Array(path.utf8)
        guard name.count < MemoryLayout.size(ofValue: address.sun_path) else { return }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: name)
            // An abstract name starts with a NUL instead of "@", and its length is exact.
            if name[0] == UInt8(ascii: "@") { raw[0] = 0 }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + name.count + (name[0] == UInt8(ascii: "@") ? 0 : 1))
        let bytes = Array(state.utf8)
        _ = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sockaddrPointer in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sockaddrPointer, length) }
            }
        }
    }

    /// `RELOADING=1` with the monotonic time systemd 253+ asks for (older versions ignore it).
    static func reloading() {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        send("RELOADING=1\nMONOTONIC_USEC=\(UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000)")
    }
}
