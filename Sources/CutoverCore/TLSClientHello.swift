/// Reads the server name (SNI, RFC 6066 §3) from the first bytes a TLS client sends, without
/// terminating TLS: a TCP listener peeks, picks the profile, then splices the same bytes on.
///
/// Fed the bytes received so far; answers `needMore` until the ClientHello is whole, so a client
/// that sends it in several segments (or several TLS records) is read to the end of it. Only
/// record and handshake framing and the extension list are walked; nothing is verified
/// cryptographically: a lie in SNI only picks a backend, which then does the real handshake.
public enum TLSClientHello {
    /// What the bytes so far say.
    public enum ServerName: Sendable, Equatable {
        /// The ClientHello is not complete yet.
        case needMore
        /// A complete ClientHello asking for this host name (as sent, bytes).
        case found([UInt8])
        /// A complete ClientHello without a host name: route to the default.
        case absent
        /// Not a TLS ClientHello, or a malformed one: route to the default.
        case malformed(String)
    }

    /// A ClientHello may span records, but a real one is a few hundred bytes to a few kilobytes
    /// (post-quantum key shares included); past this the peek gives up rather than buffer more.
    public static let maxHelloBytes = 16_384

    /// Parses the bytes a client sent first.
    public static func serverName(in bytes: UnsafeRawBufferPointer) -> ServerName {
        // Reassemble the handshake bytes from the records; the usual single record needs no copy
        // of its own, but keeping one path keeps the parser simple and the hello is small.
        var handshake: [UInt8] = []
        var offset = 0
        var wanted: Int?
        while wanted.map({ handshake.count < $0 }) ?? true {
            guard bytes.count - offset >= 5 else { return .needMore }
            guard bytes[offset] == 0x16 else {
                return .malformed(offset == 0 ? "not a TLS handshake record" : "the ClientHello is interrupted by another record type")
            }
            guard bytes[offset + 1] == 0x03 else { return .malformed("unknown TLS record version") }
            let length = Int(bytes[offset + 3]) << 8 | Int(bytes[offset + 4])
            guard length > 0 else { return .malformed("empty handshake record") }
            guard length <= 16_384 else { return .malformed("record of \(length) bytes is over the TLS limit of 16384") }
            guard bytes.count - offset - 5 >= length else { return .needMore }
            handshake.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[(offset + 5)..<(offset + 5 + length)]))
            offset += 5 + length
            if wanted == nil && handshake.count >= 4 {
                guard handshake[0] == 0x01 else { return .malformed("first handshake message is not a ClientHello") }
                let helloLength = Int(handshake[1]) << 16 | Int(handshake[2]) << 8 | Int(handshake[3])
                guard helloLength <= maxHelloBytes else { return .malformed("ClientHello over \(maxHelloBytes) bytes") }
                wanted = 4 + helloLength
            }
            if handshake.count > maxHelloBytes + 4 { return .malformed("ClientHello over \(maxHelloBytes) bytes") }
        }
        return handshake.withUnsafeBytes { parseHello(UnsafeRawBufferPointer(rebasing: $0[4..<wanted!])) }
    }

    /// Walks a ClientHello body (after the 4-byte handshake header) to the server_name extension.
    static func parseHello(_ body: UnsafeRawBufferPointer) -> ServerName {
        var reader = Reader(bytes: body)
        // legacy_version (2), random (32), session id, cipher suites, compression methods.
        guard reader.skip(34), reader.skipVector(lengthBytes: 1), reader.skipVector(lengthBytes: 2), reader.skipVector(lengthBytes: 1) else {
            return .malformed("truncated ClientHello")
        }
        if reader.atEnd { return .absent }  // no extensions at all (SSL 3-era clients)
        guard let extensionsLength = reader.number(2), let extensions = reader.take(extensionsLength), reader.atEnd else {
            return .malformed("bad ClientHello extensions length")
        }
        var list = Reader(bytes: extensions)
        while !list.atEnd {
            guard let type = list.number(2), let length = list.number(2), let data = list.take(length) else {
                return .malformed("truncated extension")
            }
            guard type == 0 else { continue }
            return parseServerNameList(data)
        }
        return .absent
    }

    /// The first `host_name` entry of a server_name extension.
    private static func parseServerNameList(_ data: UnsafeRawBufferPointer) -> ServerName {
        var reader = Reader(bytes: data)
        guard let listLength = reader.number(2), let list = reader.take(listLength), reader.atEnd else {
            return .malformed("bad server_name list length")
        }
        var names = Reader(bytes: list)
        while !names.atEnd {
            guard let nameType = names.number(1), let length = names.number(2), let name = names.take(length) else {
                return .malformed("truncated server_name entry")
            }
            guard nameType == 0 else { continue }
            guard !name.isEmpty else { return .malformed("empty server name") }
            // A NUL or a control byte in a name is an attack on string handling, not a host.
            guard !name.contains(where: { $0 <= 0x20 || $0 >= 0x7F }) else { return .malformed("server name with control or non-ASCII bytes") }
            return .found(Array(name))
        }
        return .absent
    }

    /// A cursor over TLS's length-prefixed fields.
    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var offset = 0

        init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

        var atEnd: Bool { offset == bytes.count }

        mutating func number(_ width: Int) -> Int? {
            guard bytes.count - offset >= width else { return nil }
            var value = 0
            for i in 0..<width { value = value << 8 | Int(bytes[offset + i]) }
            offset += width
            return value
        }

        mutating func take(_ count: Int) -> UnsafeRawBufferPointer? {
            guard bytes.count - offset >= count else { return nil }
            defer { offset += count }
            return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
        }

        mutating func skip(_ count: Int) -> Bool { take(count) != nil }

        mutating func skipVector(lengthBytes: Int) -> Bool {
            guard let length = number(lengthBytes) else { return false }
            return skip(length)
        }
    }
}
