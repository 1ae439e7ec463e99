/// The PROXY protocol (HAProxy's `proxy-protocol.txt`, versions 1 and 2): the header a balancer in
/// front of us sends before anything else on a connection, naming the client it accepted, and the
/// one we send to an endpoint for the same reason.
///
/// Parsing is fed the bytes received so far and answers `incomplete` until the header is whole.
/// It never asks for a byte past the header: while it answers `incomplete`, every byte given
/// belongs to the header, so the reader can consume them and the connection's own bytes (an HTTP
/// request, a TLS ClientHello) stay in the socket for whoever reads next.
public enum ProxyProtocol {
    /// The version of the header to send (`send_proxy`).
    public enum Version: String, Sendable, Equatable, CaseIterable {
        /// The text form: `PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n`.
        case v1
        /// The binary form: a 12-byte signature, then addresses in network order.
        case v2
    }

    /// One side of a TCP connection: an IPv4 (4 bytes) or IPv6 (16 bytes) address and a port.
    public struct Address: Sendable, Equatable, CustomStringConvertible {
        /// The address in network order, 4 or 16 bytes.
        public let ip: [UInt8]
        public let port: UInt16

        /// - Precondition: `ip` has 4 or 16 bytes.
        public init(ip: [UInt8], port: UInt16) {
            self.ip = ip
            self.port = port
        }

        /// The address without port, IPv6 without brackets (as forwarding headers and logs name it).
        public var text: String { IPAddressText.format(ip) }

        public var description: String { ip.count == 16 ? "[\(text)]:\(port)" : "\(text):\(port)" }
    }

    /// Who connected to whom, as the balancer in front saw it.
    public struct Addresses: Sendable, Equatable {
        /// The client.
        public let source: Address
        /// The address the client connected to (the balancer's listener).
        public let destination: Address

        public init(source: Address, destination: Address) {
            self.source = source
            self.destination = destination
        }
    }

    /// What the bytes received so far are.
    public enum Parse: Sendable, Equatable {
        /// A prefix of a valid header: read more.
        case incomplete
        /// A header naming the client; the first `length` bytes are the header.
        case proxied(Addresses, length: Int)
        /// A header that names no client: v2 `LOCAL` (the balancer's own health check), v1
        /// `UNKNOWN`, or a v2 family we do not route (`AF_UNSPEC`, `AF_UNIX`). The spec says to use
        /// the connection's own addresses then; the first `length` bytes are the header.
        case local(length: Int)
        /// Not a PROXY header, or a malformed one: close the connection.
        case failed(ProxyProtocolError)
    }

    /// A v1 header is at most 107 bytes, CRLF included (spec §2.1).
    public static let maxV1Length = 107
    /// Our bound on a v2 header, TLVs included. The format allows 16 + 65535 bytes; the TLVs real
    /// balancers add (AWS's VPC endpoint id, GCP's PSC id, TLS details) are well under 1 KiB, and
    /// a connection should not make us buffer 64 KiB before it has said who it is.
    public static let maxV2Length = 4096
    /// The v2 signature: `\r\n\r\n\0\r\nQUIT\n`, which no v1 header or HTTP request begins with.
    public static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    private static let v1Prefix = Array("PROXY ".utf8)

    /// Parses the start of a connection's bytes.
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> Parse {
        // Decide the version on the bytes present, so a client speaking plain HTTP (or TLS) to a
        // PROXY listener is refused on its first byte instead of waiting out the timeout.
        let v2Seen = min(bytes.count, v2Signature.count)
        if v2Seen > 0, bytes[0] == v2Signature[0] {
            guard zip(bytes[0..<v2Seen], v2Signature).allSatisfy({ $0 == $1 }) else { return .failed(.notProxyProtocol) }
            return parseV2(bytes)
        }
        let v1Seen = min(bytes.count, v1Prefix.count)
        guard zip(bytes[0..<v1Seen], v1Prefix).allSatisfy({ $0 == $1 }) else { return .failed(.notProxyProtocol) }
        return parseV1(bytes)
    }

    /// Parses a byte array (see `parse(_:)`).
    public static func parse(_ bytes: [UInt8]) -> Parse {
        bytes.withUnsafeBytes { parse($0) }
    }

    // MARK: - Version 1

    /// `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n`, or `PROXY UNKNOWN …\r\n`.
    private static func parseV1(_ bytes: UnsafeRawBufferPointer) -> Parse {
        guard let lf = bytes.prefix(maxV1Length).firstIndex(of: 0x0A) else {
            return bytes.count >= maxV1Length ? .failed(.v1TooLong) : .incomplete
        }
        guard lf > 0, bytes[lf - 1] == 0x0D else { return .failed(.v1Malformed("the line does not end in CRLF")) }
        let length = lf + 1
        guard let line = String(validating: bytes[0..<(lf - 1)], as: UTF8.self) else { return .failed(.v1Malformed("not ASCII")) }
        // Single spaces only (spec §2.1): split without dropping empty fields, so a double space fails.
        let fields = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        guard fields.count >= 2 else { return .failed(.v1Malformed("no protocol after PROXY")) }
        let width: Int
        switch fields[1] {
        case "UNKNOWN": return .local(length: length)
        case "TCP4": width = 4
        case "TCP6": width = 16
        default: return .failed(.v1Malformed("unknown protocol \"\(fields[1])\" (want TCP4, TCP6 or UNKNOWN)"))
        }
        guard fields.count == 6 else {
            return .failed(.v1Malformed("\(fields.count - 2) fields after \(fields[1]), want 4 (source, destination, source port, destination port)"))
        }
        guard let source = ipAddress(fields[2], width: width) else { return .failed(.v1Malformed("source \"\(fields[2])\" is not an \(fields[1]) address")) }
        guard let destination = ipAddress(fields[3], width: width) else {
            return .failed(.v1Malformed("destination \"\(fields[3])\" is not an \(fields[1]) address"))
        }
        guard let sourcePort = port(fields[4]) else { return .failed(.v1Malformed("source port \"\(fields[4])\" is not 0-65535")) }
        guard let destinationPort = port(fields[5]) else { return .failed(.v1Malformed("destination port \"\(fields[5])\" is not 0-65535")) }
        let addresses = Addresses(source: Address(ip: source, port: sourcePort), destination: Address(ip: destination, port: destinationPort))
        return .proxied(addresses, length: length)
    }

    private static func ipAddress(_ text: String, width: Int) -> [UInt8]? {
        guard let bytes = IPAddressText.parse(text), bytes.count == width else { return nil }
        return bytes
    }

    /// A decimal port without sign or leading zero (spec §2.1).
    private static func port(_ text: String) -> UInt16? {
        guard !text.isEmpty, text.count <= 5, text.utf8.allSatisfy({ $0 &- UInt8(ascii: "0") < 10 }) else { return nil }
        guard text == "0" || !text.hasPrefix("0") else { return nil }
        return UInt16(text)
    }

    // MARK: - Version 2

    /// Signature (12), version and command (1), family and transport (1), length (2), addresses, TLVs.
    private static func parseV2(_ bytes: UnsafeRawBufferPointer) -> Parse {
        guard bytes.count >= 16 else { return .incomplete }
        let versionCommand = bytes[12]
        guard versionCommand >> 4 == 2 else { return .failed(.v2Malformed("version \(versionCommand >> 4), want 2")) }
        let addressLength = Int(bytes[14]) << 8 | Int(bytes[15])
        let length = 16 + addressLength
        guard length <= maxV2Length else { return .failed(.v2TooLong(length)) }
        let command = versionCommand & 0x0F
        guard command <= 1 else { return .failed(.v2Malformed("command \(command), want LOCAL (0) or PROXY (1)")) }
        guard bytes.count >= length else { return .incomplete }
        // LOCAL: the balancer speaks for itself; whatever address block follows is skipped.
        if command == 0 { return .local(length: length) }
        let family = bytes[13] >> 4
        let transport = bytes[13] & 0x0F
        let width: Int
        switch family {
        case 0, 3: return .local(length: length)  // AF_UNSPEC, AF_UNIX: no IP client to name
        case 1: width = 4
        case 2: width = 16
        default: return .failed(.v2Malformed("address family \(family), want AF_INET (1), AF_INET6 (2), AF_UNIX (3) or AF_UNSPEC (0)"))
        }
        guard transport == 1 else { return .failed(.v2Malformed("transport \(transport) on a TCP connection, want STREAM (1)")) }
        guard addressLength >= 2 * width + 4 else {
            return .failed(.v2Malformed("\(addressLength) address bytes, an \(width == 4 ? "AF_INET" : "AF_INET6") block needs \(2 * width + 4)"))
        }
        let base = 16
        let source = Array(bytes[base..<(base + width)])
        let destination = Array(bytes[(base + width)..<(base + 2 * width)])
        let ports = base + 2 * width
        let sourcePort = UInt16(bytes[ports]) << 8 | UInt16(bytes[ports + 1])
        let destinationPort = UInt16(bytes[ports + 2]) << 8 | UInt16(bytes[ports + 3])
        // TLVs (after the addresses, up to `length`) carry nothing we act on: skipped with the header.
        let addresses = Addresses(source: Address(ip: source, port: sourcePort), destination: Address(ip: destination, port: destinationPort))
        return .proxied(addresses, length: length)
    }

    // MARK: - Sending

    /// The header to send first on a new connection to an endpoint, naming `addresses`' client.
    ///
    /// An IPv4 and an IPv6 side cannot share one header line: both are then written as IPv6 (an
    /// IPv4 address as `::ffff:a.b.c.d`), as HAProxy does.
    public static func header(_ version: Version, for addresses: Addresses) -> [UInt8] {
        var source = addresses.source.ip
        var destination = addresses.destination.ip
        if source.count != destination.count {
            source = mappedV6(source)
            destination = mappedV6(destination)
        }
        let v4 = source.count == 4
        switch version {
        case .v1:
            let line = "PROXY \(v4 ? "TCP4" : "TCP6") \(IPAddressText.format(source)) \(IPAddressText.format(destination)) "
                + "\(addresses.source.port) \(addresses.destination.port)\r\n"
            return Array(line.utf8)
        case .v2:
            var out = v2Signature
            out.append(0x21)  // version 2, PROXY
            out.append(v4 ? 0x11 : 0x21)  // AF_INET or AF_INET6, STREAM
            let blockLength = 2 * source.count + 4
            out.append(UInt8(blockLength >> 8))
            out.append(UInt8(blockLength & 0xFF))
            out += source
            out += destination
            for port in [addresses.source.port, addresses.destination.port] {
                out.append(UInt8(port >> 8))
                out.append(UInt8(port & 0xFF))
            }
            return out
        }
    }

    /// The header of a connection that speaks for no client (v1 `UNKNOWN`, v2 `LOCAL`): what a
    /// health probe sends an endpoint that expects a header on every connection.
    public static func localHeader(_ version: Version) -> [UInt8] {
        switch version {
        case .v1: return Array("PROXY UNKNOWN\r\n".utf8)
        case .v2: return v2Signature + [0x20, 0x00, 0x00, 0x00]  // version 2, LOCAL, AF_UNSPEC, no addresses
        }
    }

    private static func mappedV6(_ ip: [UInt8]) -> [UInt8] {
        ip.count == 16 ? ip : Array(repeating: 0, count: 10) + [0xFF, 0xFF] + ip
    }
}

/// Why a connection's first bytes are not a PROXY header we accept; the text is for the log.
public enum ProxyProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The bytes begin neither `PROXY ` nor the v2 signature (a client talking to us directly).
    case notProxyProtocol
    /// No CRLF within the first 107 bytes.
    case v1TooLong
    case v1Malformed(String)
    /// The v2 header announces more bytes than `ProxyProtocol.maxV2Length`.
    case v2TooLong(Int)
    case v2Malformed(String)

    public var description: String {
        switch self {
        case .notProxyProtocol: return "not a PROXY protocol header (the listener has proxy_protocol on)"
        case .v1TooLong: return "PROXY v1 header without CRLF in its first \(ProxyProtocol.maxV1Length) bytes"
        case .v1Malformed(let reason): return "malformed PROXY v1 header: \(reason)"
        case .v2TooLong(let length): return "PROXY v2 header of \(length) bytes is over the limit of \(ProxyProtocol.maxV2Length)"
        case .v2Malformed(let reason): return "malformed PROXY v2 header: \(reason)"
        }
    }
}
