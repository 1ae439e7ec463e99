/// The status line and header fields of a response, as received from an upstream or sent to a client.
public struct HTTPResponseHead: Sendable, Equatable {
    /// The protocol version of the status line.
    public var version: HTTPVersion
    /// The three-digit status code, 100...599.
    public var status: Int
    /// The reason phrase as sent; may be empty and carries no meaning.
    public var reason: String
    /// The header fields in received order.
    public var headers: HTTPHeaders

    /// A head with these parts; the reason defaults to the standard phrase for `status`.
    public init(version: HTTPVersion = .http1_1, status: Int, reason: String? = nil, headers: HTTPHeaders = HTTPHeaders()) {
        self.version = version
        self.status = status
        self.reason = reason ?? HTTPErrorResponse.reasonPhrase(status)
        self.headers = headers
    }

    /// Whether the upstream keeps the connection open after this response: HTTP/1.1 unless
    /// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
    ///
    /// - Important: a body framed `.untilClose` also ends the connection, whatever this says.
    public var keepAlive: Bool {
        HTTPPersistence.keepAlive(version: version, headers: headers)
    }

    /// Appends `HTTP/1.x SP status SP reason CRLF`, one `Name: value CRLF` per field and the final CRLF.
    public func write(into buffer: inout [UInt8]) {
        buffer.reserveCapacity(buffer.count + reason.utf8.count + 17 + headers.serializedByteCount)
        writeStatusLine(version: version, into: &buffer)
        headers.write(into: &buffer)
        buffer.append(HTTPSyntax.cr)
        buffer.append(HTTPSyntax.lf)
    }

    /// Appends `HTTP/1.x SP status SP reason CRLF` with the given version.
    func writeStatusLine(version: HTTPVersion, into buffer: inout [UInt8]) {
        buffer.append(contentsOf: version.text.utf8)
        buffer.append(HTTPSyntax.space)
        // Three digits without going through String interpolation.
        let code = max(0, min(status, 999))
        buffer.append(UInt8(ascii: "0") + UInt8(code / 100))
        buffer.append(UInt8(ascii: "0") + UInt8(code / 10 % 10))
        buffer.append(UInt8(ascii: "0") + UInt8(code % 10))
        buffer.append(HTTPSyntax.space)
        buffer.append(contentsOf: reason.utf8)
        buffer.append(HTTPSyntax.cr)
        buffer.append(HTTPSyntax.lf)
    }
}
