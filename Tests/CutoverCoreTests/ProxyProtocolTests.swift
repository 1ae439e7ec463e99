import CutoverCore
import XCTest

/// The PROXY header parser (HAProxy's proxy-protocol.txt, v1 and v2) and the headers we send.
final class ProxyProtocolTests: XCTestCase {
    typealias Address = ProxyProtocol.Address

    func parse(_ text: String) -> ProxyProtocol.Parse { ProxyProtocol.parse(Array(text.utf8)) }

    func failed(_ parse: ProxyProtocol.Parse, file: StaticString = #filePath, line: UInt = #line) -> ProxyProtocolError? {
        if case .failed(let error) = parse { return error }
        XCTFail("expected a failure, got \(parse)", file: file, line: line)
        return nil
    }

    /// A v2 header: signature, version/command, family/transport, length, then `body`.
    func v2(command: UInt8 = 1, family: UInt8 = 0x11, _ body: [UInt8], length: Int? = nil) -> [UInt8] {
        let count = length ?? body.count
        return ProxyProtocol.v2Signature + [0x20 | command, family, UInt8(count >> 8), UInt8(count & 0xFF)] + body
    }

    static let v4Block: [UInt8] = [203, 0, 113, 7, 192, 0, 2, 1, 0xC8, 0x22, 0x01, 0xBB]  // 51234 → 443

    // MARK: - v1

    func testV1TCP4_namesClientAndDestination_andItsLength() {
        let header = "PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n"
        let addresses = ProxyProtocol.Addresses(
            source: Address(ip: [203, 0, 113, 7], port: 51234), destination: Address(ip: [192, 0, 2, 1], port: 443))
        XCTAssertEqual(parse(header + "GET / HTTP/1.1\r\n"), .proxied(addresses, length: header.utf8.count))
    }

    func testV1TCP6_parsesIPv6Addresses() {
        let header = "PROXY TCP6 2001:db8::7 2001:db8::1 4711 80\r\n"
        guard case .proxied(let addresses, let length) = parse(header) else { return XCTFail() }
        XCTAssertEqual(length, header.utf8.count)
        XCTAssertEqual(addresses.source.text, "2001:db8:0:0:0:0:0:7")
        XCTAssertEqual(addresses.source.port, 4711)
        XCTAssertEqual(addresses.destination.port, 80)
    }

    func testV1Unknown_isLocal_whateverFollowsOnTheLine() {
        XCTAssertEqual(parse("PROXY UNKNOWN\r\n"), .local(length: 15))
        XCTAssertEqual(parse("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nxyz"), .local(length: 35))
    }

    /// Fed byte by byte, the parser says incomplete until the CRLF, then the same result.
    func testV1_inPieces_isIncompleteUntilCRLF() {
        let bytes = Array("PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n".utf8)
        for end in 0..<bytes.count {
            XCTAssertEqual(ProxyProtocol.parse(Array(bytes[0..<end])), .incomplete, "after \(end) bytes")
        }
        guard case .proxied(_, let length) = ProxyProtocol.parse(bytes) else { return XCTFail() }
        XCTAssertEqual(length, bytes.count)
    }

    func testV1_malformedHeaders_areRefusedWithAReason() {
        let cases: [(String, String)] = [
            ("PROXY TCP4 10.0.0.1 10.0.0.2 1 2\n", "CRLF"),
            ("PROXY TCP5 10.0.0.1 10.0.0.2 1 2\r\n", "unknown protocol"),
            ("PROXY TCP4 10.0.0.1 10.0.0.2 1\r\n", "fields"),
            ("PROXY TCP4 10.0.0.1 10.0.0.2 1 2 3\r\n", "fields"),
            ("PROXY TCP4 10.0.0.1  10.0.0.2 1 2\r\n", "fields"),
            ("PROXY TCP4 10.0.0.256 10.0.0.2 1 2\r\n", "source"),
            ("PROXY TCP4 2001:db8::1 10.0.0.2 1 2\r\n", "source"),
            ("PROXY TCP6 2001:db8::1 10.0.0.2 1 2\r\n", "destination"),
            ("PROXY TCP4 10.0.0.1 10.0.0.2 65536 2\r\n", "source port"),
            ("PROXY TCP4 10.0.0.1 10.0.0.2 01 2\r\n", "source port"),
            ("PROXY TCP4 10.0.0.1 10.0.0.2 1 -2\r\n", "destination port"),
            ("PROXY TCP4 10.0.0.1 10.0.0.2 1 \r\n", "destination port"),
            ("PROXY \r\n", "protocol"),
        ]
        for (header, reason) in cases {
            guard let error = failed(parse(header)) else { continue }
            XCTAssertTrue("\(error)".contains(reason), "\(header.debugDescription): \(error)")
        }
    }

    func testV1_withoutCRLFIn107Bytes_isTooLong() {
        let long = "PROXY TCP6 " + String(repeating: "f", count: 120)
        XCTAssertEqual(failed(parse(long)), .v1TooLong)
        XCTAssertEqual(parse(String(long.prefix(106))), .incomplete, "106 bytes may still end in CRLF")
        XCTAssertEqual(failed(parse(String(long.prefix(107)))), .v1TooLong)
    }

    /// A client talking HTTP or TLS straight to the listener is refused on its first bytes.
    func testNotAHeader_isRefusedAtOnce() {
        XCTAssertEqual(failed(parse("GET / HTTP/1.1\r\n")), .notProxyProtocol)
        XCTAssertEqual(failed(parse("G")), .notProxyProtocol)
        XCTAssertEqual(failed(parse("PROXX")), .notProxyProtocol)
        XCTAssertEqual(failed(ProxyProtocol.parse([0x16, 0x03, 0x01])), .notProxyProtocol)
        XCTAssertEqual(failed(ProxyProtocol.parse([0x0D, 0x0A, 0x0D, 0x0A, 0x01])), .notProxyProtocol)
        XCTAssertEqual(parse("PROX"), .incomplete)
        XCTAssertEqual(ProxyProtocol.parse([UInt8]()), .incomplete)
    }

    // MARK: - v2

    func testV2Inet_namesClient_andSkipsTLVs() {
        let tlv: [UInt8] = [0x05, 0x00, 0x03, 0x61, 0x62, 0x63]  // PP2_TYPE_UNIQUE_ID "abc"
        let header = v2(Self.v4Block + tlv)
        let addresses = ProxyProtocol.Addresses(
            source: Address(ip: [203, 0, 113, 7], port: 51234), destination: Address(ip: [192, 0, 2, 1], port: 443))
        XCTAssertEqual(ProxyProtocol.parse(header + Array("GET".utf8)), .proxied(addresses, length: header.count))
    }

    func testV2Inet6_namesClient() {
        let source: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + Array(repeating: 0, count: 11) + [7]
        let destination: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + Array(repeating: 0, count: 11) + [1]
        let header = v2(family: 0x21, source + destination + [0x12, 0x67, 0x00, 0x50])
        guard case .proxied(let addresses, let length) = ProxyProtocol.parse(header) else { return XCTFail() }
        XCTAssertEqual(length, 16 + 36)
        XCTAssertEqual(addresses.source, Address(ip: source, port: 4711))
        XCTAssertEqual(addresses.destination, Address(ip: destination, port: 80))
    }

    /// LOCAL (a balancer's health check), AF_UNSPEC and AF_UNIX carry no client: served as the socket.
    func testV2LocalUnspecAndUnix_areLocal() {
        XCTAssertEqual(ProxyProtocol.parse(v2(command: 0, family: 0x00, [])), .local(length: 16))
        XCTAssertEqual(ProxyProtocol.parse(v2(command: 0, family: 0x11, Self.v4Block)), .local(length: 28), "LOCAL ignores the block")
        XCTAssertEqual(ProxyProtocol.parse(v2(family: 0x00, [])), .local(length: 16))
        XCTAssertEqual(ProxyProtocol.parse(v2(family: 0x31, Array(repeating: 0, count: 216))), .local(length: 232))
    }

    func testV2_inPieces_isIncompleteUntilItsLength() {
        let header = v2(Self.v4Block + [0x04, 0x00, 0x00])
        for end in 0..<header.count {
            XCTAssertEqual(ProxyProtocol.parse(Array(header[0..<end])), .incomplete, "after \(end) bytes")
        }
        guard case .proxied(_, let length) = ProxyProtocol.parse(header) else { return XCTFail() }
        XCTAssertEqual(length, header.count)
    }

    func testV2_malformedHeaders_areRefused() {
        var badVersion = v2(Self.v4Block)
        badVersion[12] = 0x11
        let cases: [([UInt8], String)] = [
            (badVersion, "version 1"),
            (v2(command: 2, Self.v4Block), "command 2"),
            (v2(family: 0x41, Self.v4Block), "address family 4"),
            (v2(family: 0x12, Self.v4Block), "transport 2"),
            (v2(family: 0x10, Self.v4Block), "transport 0"),
            (v2(Array(Self.v4Block.prefix(11))), "11 address bytes"),
            (v2(family: 0x21, Self.v4Block), "AF_INET6"),
        ]
        for (header, reason) in cases {
            guard let error = failed(ProxyProtocol.parse(header)) else { continue }
            XCTAssertTrue("\(error)".contains(reason), "\(reason): \(error)")
        }
    }

    /// The announced length is judged before the bytes arrive, so a huge one is refused at once.
    func testV2_overTheLengthBound_isRefusedBeforeItsBytes() {
        let header = v2([], length: ProxyProtocol.maxV2Length)
        XCTAssertEqual(failed(ProxyProtocol.parse(header)), .v2TooLong(16 + ProxyProtocol.maxV2Length))
        XCTAssertEqual(ProxyProtocol.parse(v2([], length: ProxyProtocol.maxV2Length - 16)), .incomplete)
    }

    // MARK: - Sending

    func testHeaders_weSend_parseBackToTheSameAddresses() {
        let pairs = [
            ProxyProtocol.Addresses(source: Address(ip: [198, 51, 100, 9], port: 40000), destination: Address(ip: [127, 0, 0, 1], port: 8080)),
            ProxyProtocol.Addresses(
                source: Address(ip: [0x20, 0x01, 0x0d, 0xb8] + Array(repeating: 0, count: 12), port: 1),
                destination: Address(ip: Array(repeating: 0, count: 15) + [1], port: 65535)),
        ]
        for addresses in pairs {
            for version in ProxyProtocol.Version.allCases {
                let header = ProxyProtocol.header(version, for: addresses)
                XCTAssertEqual(ProxyProtocol.parse(header), .proxied(addresses, length: header.count), "\(version) \(addresses)")
            }
        }
        let v1 = ProxyProtocol.header(.v1, for: pairs[0])
        XCTAssertEqual(String(decoding: v1, as: UTF8.self), "PROXY TCP4 198.51.100.9 127.0.0.1 40000 8080\r\n")
        XCTAssertEqual(ProxyProtocol.header(.v2, for: pairs[0]).count, 28)
    }

    /// What a probe sends: a header that names no client, read back as LOCAL.
    func testLocalHeaders_parseAsLocal() {
        XCTAssertEqual(ProxyProtocol.parse(ProxyProtocol.localHeader(.v1)), .local(length: 15))
        XCTAssertEqual(ProxyProtocol.parse(ProxyProtocol.localHeader(.v2)), .local(length: 16))
    }

    /// An IPv4 client reaching an IPv6 listener: both sides are written as IPv6.
    func testMixedFamilies_areSentAsIPv6() {
        let addresses = ProxyProtocol.Addresses(
            source: Address(ip: [192, 0, 2, 7], port: 5), destination: Address(ip: Array(repeating: 0, count: 15) + [1], port: 6))
        let v1 = String(decoding: ProxyProtocol.header(.v1, for: addresses), as: UTF8.self)
        XCTAssertEqual(v1, "PROXY TCP6 0:0:0:0:0:ffff:c000:207 0:0:0:0:0:0:0:1 5 6\r\n")
        guard case .proxied(let parsed, _) = ProxyProtocol.parse(ProxyProtocol.header(.v2, for: addresses)) else { return XCTFail() }
        XCTAssertEqual(parsed.source.ip, Array(repeating: 0, count: 10) + [0xFF, 0xFF, 192, 0, 2, 7])
    }
}
