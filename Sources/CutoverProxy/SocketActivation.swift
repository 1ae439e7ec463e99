import CutoverCore
import Foundation
import Glibc

/// systemd socket activation (`cutover.socket` beside `cutover.service`): listening sockets the
/// service manager opened and passed as descriptors 3, 4, … (`LISTEN_FDS`, for `LISTEN_PID`).
///
/// Each is matched to the config listener with the same address (a listener with port 0 takes any
/// port on its host); that listener then accepts on it instead of binding its own. A socket no
/// listener wants is closed with a warning. Without the variables, or when they are meant for
/// another process, nothing is taken.
enum SocketActivation {
    /// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
    static let firstDescriptor: Int32 = 3

    /// The passed sockets by config listener index; the variables are removed, so that programs the
    /// proxy starts (command probes, a successor) do not take them for theirs.
    static func listeners(for config: Config) -> [Int: Int32] {
        let environment = ProcessInfo.processInfo.environment
        guard let pidText = environment["LISTEN_PID"], let countText = environment["LISTEN_FDS"] else { return [:] }
        unsetenv("LISTEN_PID")
        unsetenv("LISTEN_FDS")
        unsetenv("LISTEN_FDNAMES")
        guard Int32(pidText) == getpid(), let count = Int32(countText), count > 0 else { return [:] }
        var taken: [Int: Int32] = [:]
        for fd in firstDescriptor..<(firstDescriptor + count) {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            let bound = localAddress(fd)
            let match = config.listeners.indices.first { index in
                taken[index] == nil && bound.map { serves(config.listeners[index].address, $0) } == true
            }
            if let match {
                taken[match] = fd
            } else {
                Log.warning("socket activation: descriptor \(fd) (\(bound.map { "\($0.host):\($0.port)" } ?? "not a listening socket")) matches no listener; closing it")
                close(fd)
            }
        }
        return taken
    }

    /// The numeric host and port a socket is bound to.
    private static func localAddress(_ fd: Int32) -> (host: String, port: UInt16)? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let got = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard got == 0 else { return nil }
        return numeric(withUnsafeBytes(of: &storage) { Array($0.prefix(Int(length))) })
    }

    /// Host and port of a `sockaddr` in bytes (IPv4 or IPv6).
    private static func numeric(_ bytes: [UInt8]) -> (host: String, port: UInt16)? {
        bytes.withUnsafeBytes { raw -> (String, UInt16)? in
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            switch Int32(raw.load(as: sa_family_t.self)) {
            case AF_INET:
                var address = raw.loadUnaligned(as: sockaddr_in.self)
                inet_ntop(AF_INET, &address.sin_addr, &text, socklen_t(text.count))
                return (String(cString: text), UInt16(bigEndian: address.sin_port))
            case AF_INET6:
                var address = raw.loadUnaligned(as: sockaddr_in6.self)
                inet_ntop(AF_INET6, &address.sin6_addr, &text, socklen_t(text.count))
                return (String(cString: text), UInt16(bigEndian: address.sin6_port))
            default:
                return nil
            }
        }
    }

    /// Whether a socket bound to `bound` serves a listener configured at `wanted` (its host resolved
    /// to numbers, so `localhost` matches `127.0.0.1`).
    private static func serves(_ wanted: HostPort, _ bound: (host: String, port: UInt16)) -> Bool {
        guard wanted.port == 0 || wanted.port == bound.port else { return false }
        guard let resolved = (try? Socket.resolve(HostPort(host: wanted.host, port: bound.port))).flatMap(numeric) else { return false }
        return resolved.host == bound.host
    }
}
