import CutoverCore
import Glibc

extension Socket {
    /// Both ends of a connected TCP socket: the peer as source, our side as destination (what a
    /// PROXY header names when no balancer sent one); `nil` for a socket that is not IPv4 or IPv6.
    static func addresses(_ fd: Int32) -> ProxyProtocol.Addresses? {
        guard let source = address(fd, getpeername), let destination = address(fd, getsockname) else { return nil }
        return ProxyProtocol.Addresses(source: source, destination: destination)
    }

    private static func address(_ fd: Int32, _ call: (Int32, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32) -> ProxyProtocol.Address? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { call(fd, $0, &length) }
        }
        guard result == 0 else { return nil }
        let family = Int32(storage.ss_family)
        return withUnsafeBytes(of: &storage) { raw -> ProxyProtocol.Address? in
            switch family {
            case AF_INET:
                let sin = raw.load(as: sockaddr_in.self)
                return ProxyProtocol.Address(ip: withUnsafeBytes(of: sin.sin_addr) { Array($0) }, port: UInt16(bigEndian: sin.sin_port))
            case AF_INET6:
                let sin6 = raw.load(as: sockaddr_in6.self)
                return ProxyProtocol.Address(ip: withUnsafeBytes(of: sin6.sin6_addr) { Array($0) }, port: UInt16(bigEndian: sin6.sin6_port))
            default:
                return nil
            }
        }
    }
}
