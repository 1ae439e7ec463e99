/// The start line and header fields of a request, as received from a client or sent upstream.
public struct HTTPRequestHead: Sendable, Equatable {
    /// The method exactly as sent (methods are case-sensitive), e.g. `GET`.
    public var method: String
    /// The request-target as sent: `/path?query`, `http://host/path`, `host:port` or `*`.
    public var target: String
    /// The protocol version of the request line.
    public var version: HTTPVersion
    /// The header fields in received order.
    public var headers: HTTPHeaders

    /// A head with these parts.
    public init(method: String, target: String, version: HTTPVersion = .http1_1, headers: HTTPHeaders = HTTPHeaders()) {
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
    }

    /// Whether the client wants the connection kept open after this exchange: HTTP/1.1 unless
    /// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
    public var keepAlive: Bool {
        HTTPPersistence.keepAlive(version: version, headers: headers)
    }

    /// Whether the client waits for `100 Continue` before sending its body (`Expect: 100-continue`).
    public var expectsContinue: Bool {
        headers.containsToken("100-continue", inFieldsNamed: "Expect")
    }

    /// Whether the client asks to switch protocols: a `Connection: upgrade` token and an `Upgrade` field.
    public var upgradeRequested: Bool {
        headers.contains("Upgrade") && headers.containsToken("upgrade", inFieldsNamed: "Connection")
    }

    /// Appends `METHOD SP target SP HTTP/1.x CRLF`, one `Name: value CRLF` per field and the final CRLF.
    public func write(into buffer: inout [UInt8]) {
        buffer.reserveCapacity(buffer.count + method.utf8.count + target.utf8.count + 13 + headers.serializedByteCount)
        writeRequestLine(version: version, into: &buffer)
        headers.write(into: &buffer)
        buffer.append(HTTPSyntax.cr)
        buffer.append(HTTPSyntax.lf)
    }

    /// Appends `METHOD SP target SP HTTP/1.x CRLF` with the given version.
    func writeRequestLine(version: HTTPVersion, into buffer: inout [UInt8]) {
        buffer.append(contentsOf: method.utf8)
        buffer.append(HTTPSyntax.space)
        buffer.append(contentsOf: target.utf8)
        buffer.append(HTTPSyntax.space)
        buffer.append(contentsOf: version.text.utf8)
        buffer.append(HTTPSyntax.cr)
        buffer.append(HTTPSyntax.lf)
    }
}

/// The keep-alive rule shared by requests and responses (RFC 9112 §9.3).
enum HTTPPersistence {
    static func keepAlive(version: HTTPVersion, headers: HTTPHeaders) -> Bool {
        switch version {
        case .http1_1: return !headers.containsToken("close", inFieldsNamed: "Connection")
        case .http1_0:
            // "close" wins over "keep-alive" when a confused peer sends both.
            return headers.containsToken("keep-alive", inFieldsNamed: "Connection")
                && !headers.containsToken("close", inFieldsNamed: "Connection")
        }
    }
}
