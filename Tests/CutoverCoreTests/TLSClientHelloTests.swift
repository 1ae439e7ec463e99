import CutoverCore
import XCTest

/// The SNI reader: a real `openssl s_client` hello, hand-built hellos, every partial prefix, and
/// each kind of malformed input.
final class TLSClientHelloTests: XCTestCase {
    /// The ClientHello `openssl s_client -servername App.Example.com` (OpenSSL 3.0) sent, captured once.
    static let openSSLHello = hex(
        "160301013c010001380303e1e1bc04d666d1349209f37fe4b775c314375a45e056320dfbca4f51757e5e1b20987b67a445d47482fb23a13bf67bff1cc97cb71b"
            + "413bd03895e8482dc65f574c003e130213031301c02cc030009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d"
            + "009c003d003c0035002f00ff010000b100000014001200000f4170702e4578616d706c652e636f6d000b000403000102000a00160014001d0017001e00190018"
            + "01000101010201030104002300000016000000170000000d002a0028040305030603080708080809080a080b0804080508060401050106010303030103020402"
            + "05020602002b0009080304030303020301002d00020101003300260024001d0020b2c0f34f7153c5cc2efb10bec777108c3f5ad37a27fd545c91ff562b7ad824"
            + "53")

    func testOpenSSLHello_yieldsServerNameAsSent() {
        XCTAssertEqual(parse(Self.openSSLHello), .found(Array("App.Example.com".utf8)))
    }

    func testEveryProperPrefix_needsMore() {
        let hello = Self.openSSLHello
        for length in 0..<hello.count {
            XCTAssertEqual(parse(Array(hello[0..<length])), .needMore, "prefix of \(length) bytes")
        }
    }

    func testBytesAfterTheHello_areIgnored() {
        XCTAssertEqual(parse(Self.openSSLHello + [0x17, 0x03, 0x03, 0x00]), .found(Array("App.Example.com".utf8)))
    }

    func testHelloSplitOverTwoRecords_isReassembled() {
        let handshake = Self.handshake(Self.helloBody(extensions: [Self.serverNameExtension("a.example.com")]))
        let split = Self.record(Array(handshake[0..<10])) + Self.record(Array(handshake[10...]))
        XCTAssertEqual(parse(split), .found(Array("a.example.com".utf8)))
        for length in 0..<split.count {
            XCTAssertEqual(parse(Array(split[0..<length])), .needMore, "prefix of \(length) bytes")
        }
    }

    func testHandshakeHeaderSplitAcrossRecords_isReassembled() {
        let handshake = Self.handshake(Self.helloBody(extensions: [Self.serverNameExtension("b.example.com")]))
        let split = Self.record(Array(handshake[0..<2])) + Self.record(Array(handshake[2...]))
        XCTAssertEqual(parse(split), .found(Array("b.example.com".utf8)))
    }

    func testHelloWithoutServerName_isAbsent() {
        let body = Self.helloBody(extensions: [Self.extensionBytes(type: 0x000b, [0x01, 0x00])])
        XCTAssertEqual(parse(Self.record(Self.handshake(body))), .absent)
    }

    func testHelloWithoutExtensions_isAbsent() {
        XCTAssertEqual(parse(Self.record(Self.handshake(Self.helloBody(extensions: nil)))), .absent)
    }

    func testServerNameAfterOtherExtensions_isFound() {
        let body = Self.helloBody(extensions: [Self.extensionBytes(type: 0x0017, []), Self.extensionBytes(type: 0x000b, [0x01, 0x00]), Self.serverNameExtension("late.example")])
        XCTAssertEqual(parse(Self.record(Self.handshake(body))), .found(Array("late.example".utf8)))
    }

    func testNonHostNameEntries_areSkipped() {
        let name = Array("x.example".utf8)
        var list: [UInt8] = [0x07, 0x00, 0x02, 0xAA, 0xBB]  // an unknown name type first
        list += [0x00] + Self.u16(name.count) + name
        let body = Self.helloBody(extensions: [Self.extensionBytes(type: 0x0000, Self.u16(list.count) + list)])
        XCTAssertEqual(parse(Self.record(Self.handshake(body))), .found(name))
    }

    func testNotTLS_isMalformed() {
        XCTAssertEqual(parse(Array("GET / HTTP/1.1\r\n".utf8)), .malformed("not a TLS handshake record"))
        XCTAssertEqual(parse([0x16, 0x02, 0x00, 0x00, 0x01, 0x01]), .malformed("unknown TLS record version"))
        XCTAssertEqual(parse([0x16, 0x03, 0x01, 0x00, 0x00]), .malformed("empty handshake record"))
        XCTAssertEqual(parse([0x16, 0x03, 0x01, 0x48, 0x01]), .malformed("record of 18433 bytes is over the TLS limit of 16384"))
    }

    func testOtherHandshakeMessageFirst_isMalformed() {
        XCTAssertEqual(parse(Self.record([0x02, 0x00, 0x00, 0x00])), .malformed("first handshake message is not a ClientHello"))
    }

    func testAlertBetweenHelloRecords_isMalformed() {
        let handshake = Self.handshake(Self.helloBody(extensions: [Self.serverNameExtension("a.example.com")]))
        let bytes = Self.record(Array(handshake[0..<10])) + [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]
        XCTAssertEqual(parse(bytes), .malformed("the ClientHello is interrupted by another record type"))
    }

    func testOversizedHello_isMalformed() {
        XCTAssertEqual(parse(Self.record([0x01, 0x01, 0x00, 0x00])), .malformed("ClientHello over 16384 bytes"))
    }

    func testTruncatedInnerFields_areMalformed() {
        // A hello whose declared length is honest but whose fields overrun it.
        XCTAssertEqual(parse(Self.record(Self.handshake([0x03, 0x03] + [UInt8](repeating: 0, count: 10)))), .malformed("truncated ClientHello"))
        var body = Self.helloBody(extensions: [Self.serverNameExtension("a.example")])
        body[body.count - 1] = 0  // nothing else changes: lengths still add up
        XCTAssertEqual(parse(Self.record(Self.handshake(body))), .malformed("server name with control or non-ASCII bytes"))
        let badExtensions = Self.helloBody(extensions: nil) + [0x00, 0x09, 0x00, 0x00]
        XCTAssertEqual(parse(Self.record(Self.handshake(badExtensions))), .malformed("bad ClientHello extensions length"))
        let shortExtension = Self.helloBody(extensions: nil) + [0x00, 0x04, 0x00, 0x00, 0x00, 0x09]
        XCTAssertEqual(parse(Self.record(Self.handshake(shortExtension))), .malformed("truncated extension"))
        let badList = Self.helloBody(extensions: [Self.extensionBytes(type: 0, [0x00, 0x09, 0x00])])
        XCTAssertEqual(parse(Self.record(Self.handshake(badList))), .malformed("bad server_name list length"))
        let emptyName = Self.helloBody(extensions: [Self.extensionBytes(type: 0, [0x00, 0x03, 0x00, 0x00, 0x00])])
        XCTAssertEqual(parse(Self.record(Self.handshake(emptyName))), .malformed("empty server name"))
    }

    // MARK: - Building hellos

    private func parse(_ bytes: [UInt8]) -> TLSClientHello.ServerName {
        bytes.withUnsafeBytes { TLSClientHello.serverName(in: $0) }
    }

    static func hex(_ text: String) -> [UInt8] {
        var bytes: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(index, offsetBy: 2)
            bytes.append(UInt8(text[index..<next], radix: 16)!)
            index = next
        }
        return bytes
    }

    static func u16(_ value: Int) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xFF)] }

    static func record(_ payload: [UInt8]) -> [UInt8] { [0x16, 0x03, 0x01] + u16(payload.count) + payload }

    static func handshake(_ body: [UInt8]) -> [UInt8] { [0x01, 0x00] + u16(body.count) + body }

    /// Version, random, an empty session id, two cipher suites, null compression, then the extensions.
    static func helloBody(extensions: [[UInt8]]?) -> [UInt8] {
        var body: [UInt8] = [0x03, 0x03] + [UInt8](repeating: 0x42, count: 32) + [0x00] + u16(4) + [0x13, 0x01, 0x13, 0x02] + [0x01, 0x00]
        if let extensions {
            let all = extensions.flatMap { $0 }
            body += u16(all.count) + all
        }
        return body
    }

    static func extensionBytes(type: Int, _ data: [UInt8]) -> [UInt8] { u16(type) + u16(data.count) + data }

    static func serverNameExtension(_ name: String) -> [UInt8] {
        let bytes = Array(name.utf8)
        let entry = [0x00] + u16(bytes.count) + bytes
        return extensionBytes(type: 0, u16(entry.count) + entry)
    }
}
