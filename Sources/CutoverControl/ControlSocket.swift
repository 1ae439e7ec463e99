import Glibc

/// The socket calls the control-plane server and client share: the Unix address of a path, and
/// a loop that sends a whole answer on a blocking socket.
public enum ControlSocket {
    /// Sends all of `bytes` on a blocking socket (admin traffic, the sample backend); false when the
    /// peer is gone. Never raises SIGPIPE.
    public static func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    /// The address of a Unix socket at `path`; `nil` when the path does not fit in `sun_path`.
    public static func unixAddress(_ path: String) -> sockaddr_un? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        guard path.utf8.count < MemoryLayout.size(ofValue: address.sun_path) else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: path.utf8)
            raw[path.utf8.count] = 0
        }
        return address
    }
}
