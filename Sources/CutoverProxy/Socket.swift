import CShims
import CutoverCore
import Glibc

/// Thin, allocation-free wrappers over the socket calls the proxy needs.
enum Socket {
    /// A failed system call, with the call's name and `errno`.
    struct Failure: Error, CustomStringConvertible {
        let call: String
        let code: Int32

        var description: String { "\(call): \(String(cString: strerror(code)))" }
    }

    /// Resolves `host:port` to one socket address (bytes of a `sockaddr_in`/`sockaddr_in6`).
    ///
    /// - Important: may block on DNS; call only on the control queue or at start-up, never on a worker.
    static func resolve(_ address: HostPort) throws -> [UInt8] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(address.host, String(address.port), &hints, &result)
        guard status == 0, let first = result else {
            throw ResolveFailure(address: address, reason: String(cString: gai_strerror(status)))
        }
        defer { freeaddrinfo(result) }
        return Array(UnsafeRawBufferPointer(start: first.pointee.ai_addr, count: Int(first.pointee.ai_addrlen)))
    }

    /// An address that could not be resolved.
    struct ResolveFailure: Error, CustomStringConvertible {
        let address: HostPort
        let reason: String
        var description: String { "cannot resolve \(address.host): \(reason)" }
    }

    /// Opens a non-blocking listening TCP socket bound to `address` (port 0 picks a free port).
    static func listen(on address: HostPort, backlog: Int32 = 4096) throws -> Int32 {
        let addressBytes = try resolve(address)
        let family = addressBytes.withUnsafeBytes { $0.load(as: sa_family_t.self) }
        let fd = socket(Int32(family), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(call: "socket", code: errno) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let bound = addressBytes.withUnsafeBytes { raw in
            bind(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
        }
        guard bound == 0 else {
            let code = errno
            Glibc.close(fd)
            throw Failure(call: "bind \(address)", code: code)
        }
        guard Glibc.listen(fd, backlog) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw Failure(call: "listen \(address)", code: code)
        }
        return fd
    }

    /// Starts a non-blocking connect; the socket becomes writable when it completes (check `pendingError`).
    static func startConnect(to addressBytes: [UInt8]) throws -> Int32 {
        let family = addressBytes.withUnsafeBytes { $0.load(as: sa_family_t.self) }
        let fd = socket(Int32(family), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(call: "socket", code: errno) }
        setNoDelay(fd)
        let status = addressBytes.withUnsafeBytes { raw in
            connect(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
        }
        if status != 0 && errno != EINPROGRESS {
            let code = errno
            Glibc.close(fd)
            throw Failure(call: "connect", code: code)
        }
        return fd
    }

    /// The error of a finished non-blocking connect (0 when it succeeded).
    static func pendingError(_ fd: Int32) -> Int32 {
        var code: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &length)
        return code
    }

    /// Accepts one connection as non-blocking; -1 with `errno` set when none is waiting.
    static func accept(_ listener: Int32) -> Int32 {
        cshims_accept4(listener, Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
    }

    static func setNoDelay(_ fd: Int32) {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    /// The port a socket is bound to (to learn what port 0 became).
    static func localPort(_ fd: Int32) -> UInt16 {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return port(of: storage)
    }

    /// The peer of a connected socket: its address bytes (4 or 16) and text form.
    static func peer(_ fd: Int32) -> (bytes: [UInt8], text: String) {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
        }
        var bytes: [UInt8] = []
        switch Int32(storage.ss_family) {
        case AF_INET:
            withUnsafeBytes(of: &storage) { raw in
                let sin = raw.load(as: sockaddr_in.self)
                withUnsafeBytes(of: sin.sin_addr) { bytes = Array($0) }
            }
        case AF_INET6:
            withUnsafeBytes(of: &storage) { raw in
                let sin6 = raw.load(as: sockaddr_in6.self)
                withUnsafeBytes(of: sin6.sin6_addr) { bytes = Array($0) }
            }
        default:
            return ([], "unknown")
        }
        return (bytes, IPAddressText.format(bytes))
    }

    private static func port(of storage: sockaddr_storage) -> UInt16 {
        var copy = storage
        return withUnsafeBytes(of: &copy) { raw in
            switch Int32(storage.ss_family) {
            case AF_INET: return UInt16(bigEndian: raw.load(as: sockaddr_in.self).sin_port)
            case AF_INET6: return UInt16(bigEndian: raw.load(as: sockaddr_in6.self).sin6_port)
            default: return 0
            }
        }
    }
}

extension Socket {
    /// Bytes the kernel holds for `fd` that nobody has read yet (0 on error).
    static func bytesWaiting(_ fd: Int32) -> Int {
        var count: Int32 = 0
        return ioctl(fd, UInt(FIONREAD), &count) == 0 ? Int(count) : 0
    }
}

/// Milliseconds on the monotonic clock, for deadlines.
@inline(__always)
func monotonicMilliseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1000 + UInt64(now.tv_nsec) / 1_000_000
}
