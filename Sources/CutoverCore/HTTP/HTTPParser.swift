#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Parses HTTP/1.1 request and response heads (RFC 9112 §2–5) straight from received bytes.
///
/// Call again with the whole buffer received so far until the result is `.complete`; the parser
/// keeps no state. Everything is checked strictly, because a proxy that reads a head differently
/// from its upstream is how request smuggling happens: only CRLF line endings, no obs-fold, no
/// whitespace before the colon, no control characters in values, and unambiguous body framing.
public enum HTTPParser {
    /// Parses a request head from the start of `bytes`, skipping empty lines before the request
    /// line (RFC 9112 §2.2) and counting them in `headLength`.
    ///
    /// A `.complete` head also has a valid Host (exactly one; required for HTTP/1.1) and valid
    /// body framing, so `bodyFraming()` will not throw for it. Errors carry 400, 414, 431, 501 or 505.
    public static func parseRequestHead(
        _ bytes: UnsafeRawBufferPointer, limits: HTTPHeadLimits
    ) throws(HTTPParseError) -> HeadParse<HTTPRequestHead> {
        var start = 0
        while start + 1 < bytes.count, bytes[start] == HTTPSyntax.cr, bytes[start + 1] == HTTPSyntax.lf {
            start += 2
        }
        guard let frame = try findHeadEnd(bytes, from: start, limits: limits, side: .request) else {
            return .incomplete
        }
        let (method, target, version) = try parseRequestLine(bytes, from: start, to: frame.startLineEnd)

        var spans: [HTTPHeaders.Span] = []
        spans.reserveCapacity(frame.fieldCount)
        var hostCount = 0
        var mentionsFraming = false
        let fieldsStart = frame.startLineEnd + 2
        var lineStart = fieldsStart
        while lineStart < frame.headLength - 2 {
            let lineEnd = crlfIndex(bytes, from: lineStart)
            let field = try parseFieldLine(bytes, from: lineStart, to: lineEnd, side: .request, base: fieldsStart)
            switch field.kind {
            case .host: hostCount += 1
            case .framing: mentionsFraming = true
            case .other: break
            }
            spans.append(field.span)
            lineStart = lineEnd + 2
        }
        let headers = fields(bytes, from: fieldsStart, to: frame.headLength - 2, spans)
        if hostCount > 1 { throw .badRequest("multiple Host headers") }
        if hostCount == 0, version == .http1_1 { throw .badRequest("missing Host header") }

        let head = HTTPRequestHead(method: method, target: target, version: version, headers: headers)
        // Only heads naming Content-Length or Transfer-Encoding need the framing rules checked.
        if mentionsFraming { _ = try head.bodyFraming() }
        return .complete(head, headLength: frame.headLength)
    }

    /// Parses a response head from the start of `bytes`; every error carries 502 because the
    /// upstream is at fault. Body framing is checked by `bodyFraming(requestMethod:)`.
    public static func parseResponseHead(
        _ bytes: UnsafeRawBufferPointer, limits: HTTPHeadLimits
    ) throws(HTTPParseError) -> HeadParse<HTTPResponseHead> {
        guard let frame = try findHeadEnd(bytes, from: 0, limits: limits, side: .response) else {
            return .incomplete
        }
        let (version, status, reason) = try parseStatusLine(bytes, to: frame.startLineEnd)

        var spans: [HTTPHeaders.Span] = []
        spans.reserveCapacity(frame.fieldCount)
        let fieldsStart = frame.startLineEnd + 2
        var lineStart = fieldsStart
        while lineStart < frame.headLength - 2 {
            let lineEnd = crlfIndex(bytes, from: lineStart)
            spans.append(try parseFieldLine(bytes, from: lineStart, to: lineEnd, side: .response, base: fieldsStart).span)
            lineStart = lineEnd + 2
        }
        let headers = fields(bytes, from: fieldsStart, to: frame.headLength - 2, spans)
        let head = HTTPResponseHead(version: version, status: status, reason: reason, headers: headers)
        return .complete(head, headLength: frame.headLength)
    }

    // MARK: - Finding the end of the head

    /// Which peer sent the head: decides the error statuses.
    enum Side {
        case request
        case response

        /// A request problem keeps its own status; anything wrong in a response is the upstream's 502.
        func error(_ requestStatus: Int, _ reason: String) -> HTTPParseError {
            switch self {
            case .request: return HTTPParseError(status: requestStatus, reason: reason)
            case .response: return HTTPParseError(status: 502, reason: "upstream response: " + reason)
            }
        }
    }

    /// Where the start line ends (its CR), where the head ends (after the final CRLFCRLF) and how
    /// many field lines lie between.
    struct Frame {
        var startLineEnd: Int
        var headLength: Int
        var fieldCount: Int
    }

    /// Splits lines on LF (via `memchr`, the fastest scan available) and checks every LF is part of
    /// a CRLF; enforces the limits on partial data so an attacker cannot make us wait for them.
    static func findHeadEnd(
        _ bytes: UnsafeRawBufferPointer, from start: Int, limits: HTTPHeadLimits, side: Side
    ) throws(HTTPParseError) -> Frame? {
        let scanEnd = min(bytes.count, limits.maxHeadBytes)
        var lineStart = start
        var lineNumber = 0  // 0 is the start line, then one per field line
        var startLineEnd = 0
        var searchFrom = start
        while searchFrom < scanEnd, let lf = lfIndex(bytes, from: searchFrom, to: scanEnd) {
            if lf == lineStart || bytes[lf - 1] != HTTPSyntax.cr {
                throw side.error(400, "bare LF in head")
            }
            let lineLength = lf - 1 - lineStart
            if lineNumber == 0 {
                if lineLength > limits.maxStartLineBytes {
                    throw side.error(414, "start line longer than \(limits.maxStartLineBytes) bytes")
                }
                if lineLength == 0 { throw side.error(400, "empty line before status line") }
                startLineEnd = lf - 1
            } else if lineLength == 0 {
                return Frame(startLineEnd: startLineEnd, headLength: lf + 1, fieldCount: lineNumber - 1)
            } else if lineNumber > limits.maxHeaderCount {
                throw side.error(431, "more than \(limits.maxHeaderCount) header fields")
            }
            lineNumber += 1
            lineStart = lf + 1
            searchFrom = lf + 1
        }

        // No end yet: fail now if what is already here cannot fit the limits.
        var partialLength = scanEnd - lineStart
        if partialLength > 0, bytes[scanEnd - 1] == HTTPSyntax.cr { partialLength -= 1 }
        if lineNumber == 0, partialLength > limits.maxStartLineBytes {
            throw side.error(414, "start line longer than \(limits.maxStartLineBytes) bytes")
        }
        if lineNumber > limits.maxHeaderCount, partialLength > 0 {
            throw side.error(431, "more than \(limits.maxHeaderCount) header fields")
        }
        if bytes.count >= limits.maxHeadBytes {
            throw side.error(431, "head larger than \(limits.maxHeadBytes) bytes")
        }
        return nil
    }

    static func lfIndex(_ bytes: UnsafeRawBufferPointer, from start: Int, to end: Int) -> Int? {
        guard let base = bytes.baseAddress, start < end,
            let found = memchr(base + start, Int32(HTTPSyntax.lf), end - start)
        else { return nil }
        return UnsafeRawPointer(found) - base
    }

    /// The CR of the next line; only called inside a head whose lines `findHeadEnd` already checked.
    static func crlfIndex(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Int {
        (lfIndex(bytes, from: start, to: bytes.count) ?? bytes.count) - 1
    }

    // MARK: - Start lines

    static func parseRequestLine(
        _ bytes: UnsafeRawBufferPointer, from start: Int, to end: Int
    ) throws(HTTPParseError) -> (String, String, HTTPVersion) {
        guard let firstSpace = spaceIndex(bytes, from: start, to: end),
            let secondSpace = spaceIndex(bytes, from: firstSpace + 1, to: end),
            spaceIndex(bytes, from: secondSpace + 1, to: end) == nil,
            firstSpace > start, secondSpace > firstSpace + 1
        else { throw .badRequest("malformed request line") }

        for index in start..<firstSpace where !HTTPSyntax.isTokenByte(bytes[index]) {
            throw .badRequest("invalid method")
        }
        let method = slice(bytes, start, firstSpace)
        let target = slice(bytes, firstSpace + 1, secondSpace)
        try checkTarget(target, method: method)

        let version: HTTPVersion
        switch versionOf(slice(bytes, secondSpace + 1, end)) {
        case .supported(let supported): version = supported
        case .unsupported: throw HTTPParseError(status: 505, reason: "unsupported HTTP version")
        case .malformed: throw .badRequest("malformed HTTP version")
        }
        return (methodName(method), String(decoding: target, as: UTF8.self), version)
    }

    /// RFC 9112 §3.2: origin-form for most methods, absolute-form for any, authority-form only for
    /// CONNECT and `*` only for OPTIONS.
    static func checkTarget(_ target: UnsafeRawBufferPointer, method: UnsafeRawBufferPointer) throws(HTTPParseError) {
        for byte in target where byte <= HTTPSyntax.space || byte >= 0x7F {
            throw .badRequest("invalid character in request-target")
        }
        let isConnect = equals(method, "CONNECT")
        if isConnect {
            // authority-form: uri-host ":" port, with a non-empty host and a numeric port.
            guard let colon = target.lastIndex(of: HTTPSyntax.colon), colon > 0, colon < target.count - 1,
                target[(colon + 1)...].allSatisfy({ $0 &- UInt8(ascii: "0") < 10 }),
                !target.contains(UInt8(ascii: "/"))
            else { throw .badRequest("CONNECT needs an authority-form target (host:port)") }
            return
        }
        if target[0] == UInt8(ascii: "/") { return }
        if target.count == 1, target[0] == UInt8(ascii: "*") {
            if equals(method, "OPTIONS") { return }
            throw .badRequest("asterisk-form target is only allowed with OPTIONS")
        }
        if isAbsoluteForm(target) { return }
        throw .badRequest("invalid request-target")
    }

    /// `scheme "://" ...` with an RFC 3986 scheme.
    static func isAbsoluteForm(_ target: UnsafeRawBufferPointer) -> Bool {
        guard let first = target.first, HTTPSyntax.lowercased(first) &- UInt8(ascii: "a") < 26 else {
            return false
        }
        var index = 1
        while index < target.count {
            let byte = target[index]
            if byte == HTTPSyntax.colon {
                return index + 3 <= target.count && target[index + 1] == UInt8(ascii: "/")
                    && target[index + 2] == UInt8(ascii: "/")
            }
            let isSchemeByte =
                HTTPSyntax.lowercased(byte) &- UInt8(ascii: "a") < 26 || byte &- UInt8(ascii: "0") < 10
                || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".")
            if !isSchemeByte { return false }
            index += 1
        }
        return false
    }

    static func parseStatusLine(
        _ bytes: UnsafeRawBufferPointer, to end: Int
    ) throws(HTTPParseError) -> (HTTPVersion, Int, String) {
        let side = Side.response
        // "HTTP/1.1 200" then optionally SP reason-phrase.
        guard end >= 12, bytes[8] == HTTPSyntax.space, end == 12 || bytes[12] == HTTPSyntax.space else {
            throw side.error(400, "malformed status line")
        }
        let version: HTTPVersion
        switch versionOf(slice(bytes, 0, 8)) {
        case .supported(let supported): version = supported
        case .unsupported: throw side.error(505, "unsupported HTTP version")
        case .malformed: throw side.error(400, "malformed status line")
        }
        var status = 0
        for index in 9..<12 {
            let digit = bytes[index] &- UInt8(ascii: "0")
            guard digit < 10 else { throw side.error(400, "malformed status code") }
            status = status * 10 + Int(digit)
        }
        guard status >= 100, status <= 599 else { throw side.error(400, "status code \(status) out of range") }
        let reasonStart = min(13, end)
        for index in reasonStart..<end where !HTTPSyntax.isFieldValueByte(bytes[index]) {
            throw side.error(400, "control character in reason phrase")
        }
        return (version, status, String(decoding: slice(bytes, reasonStart, end), as: UTF8.self))
    }

    enum VersionMatch {
        case supported(HTTPVersion)
        case unsupported
        case malformed
    }

    /// `HTTP-version = "HTTP/" DIGIT "." DIGIT`, case-sensitive (RFC 9112 §2.3).
    static func versionOf(_ text: UnsafeRawBufferPointer) -> VersionMatch {
        guard text.count == 8, equals(UnsafeRawBufferPointer(rebasing: text[0..<5]), "HTTP/"),
            text[6] == UInt8(ascii: "."), text[5] &- UInt8(ascii: "0") < 10, text[7] &- UInt8(ascii: "0") < 10
        else { return .malformed }
        guard text[5] == UInt8(ascii: "1") else { return .unsupported }
        switch text[7] {
        case UInt8(ascii: "1"): return .supported(.http1_1)
        case UInt8(ascii: "0"): return .supported(.http1_0)
        default: return .unsupported
        }
    }

    // MARK: - Field lines

    /// What the request parser needs to remember about a field without comparing names twice.
    enum FieldKind {
        case host
        case framing
        case other
    }

    /// The field lines as `HTTPHeaders`: one copy of their bytes, the spans pointing into it.
    static func fields(_ bytes: UnsafeRawBufferPointer, from start: Int, to end: Int, _ spans: [HTTPHeaders.Span]) -> HTTPHeaders {
        HTTPHeaders(storage: start < end ? Array(slice(bytes, start, end)) : [], spans: spans)
    }

    /// `field-name ":" OWS field-value OWS` (RFC 9112 §5), rejecting everything a lenient peer
    /// might read differently; the span is relative to `base`, where the field lines start.
    static func parseFieldLine(
        _ bytes: UnsafeRawBufferPointer, from start: Int, to end: Int, side: Side, base: Int
    ) throws(HTTPParseError) -> (span: HTTPHeaders.Span, kind: FieldKind) {
        if HTTPSyntax.isWhitespace(bytes[start]) { throw side.error(400, "obsolete line folding in header") }
        var index = start
        while index < end, HTTPSyntax.isTokenByte(bytes[index]) { index += 1 }
        guard index < end else { throw side.error(400, "header line without colon") }
        let separator = bytes[index]
        if separator != HTTPSyntax.colon {
            if HTTPSyntax.isWhitespace(separator) { throw side.error(400, "whitespace between header name and colon") }
            throw side.error(400, "invalid character in header name")
        }
        if index == start { throw side.error(400, "empty header name") }
        let name = slice(bytes, start, index)

        var valueStart = index + 1
        while valueStart < end, HTTPSyntax.isWhitespace(bytes[valueStart]) { valueStart += 1 }
        var valueEnd = end
        while valueEnd > valueStart, HTTPSyntax.isWhitespace(bytes[valueEnd - 1]) { valueEnd -= 1 }
        for position in valueStart..<valueEnd where !HTTPSyntax.isFieldValueByte(bytes[position]) {
            switch bytes[position] {
            case HTTPSyntax.cr: throw side.error(400, "bare CR in head")
            case 0: throw side.error(400, "NUL in header value")
            default: throw side.error(400, "control character in header value")
            }
        }

        let kind: FieldKind
        if HTTPSyntax.equalsIgnoringCase(name, lowercase: "host") {
            kind = .host
        } else if HTTPSyntax.equalsIgnoringCase(name, lowercase: "content-length")
            || HTTPSyntax.equalsIgnoringCase(name, lowercase: "transfer-encoding")
        {
            kind = .framing
        } else {
            kind = .other
        }
        let span = HTTPHeaders.Span(
            nameStart: Int32(start - base), nameEnd: Int32(index - base),
            valueStart: Int32(valueStart - base), valueEnd: Int32(valueEnd - base),
            verbatim: valueStart == index + 2 && bytes[index + 1] == HTTPSyntax.space && valueEnd == end)
        return (span, kind)
    }

    /// The method as a `String`; the common ones are literals, not decoded per request.
    static func methodName(_ method: UnsafeRawBufferPointer) -> String {
        if equals(method, "GET") { return "GET" }
        if equals(method, "POST") { return "POST" }
        if equals(method, "HEAD") { return "HEAD" }
        if equals(method, "PUT") { return "PUT" }
        return String(decoding: method, as: UTF8.self)
    }

    // MARK: - Byte helpers

    static func spaceIndex(_ bytes: UnsafeRawBufferPointer, from start: Int, to end: Int) -> Int? {
        var index = start
        while index < end {
            if bytes[index] == HTTPSyntax.space { return index }
            index += 1
        }
        return nil
    }

    static func slice(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[start..<end])
    }

    /// Exact, case-sensitive comparison with a literal (methods and the version name are case-sensitive).
    static func equals(_ bytes: UnsafeRawBufferPointer, _ literal: StaticString) -> Bool {
        bytes.count == literal.utf8CodeUnitCount
            && (bytes.count == 0 || memcmp(bytes.baseAddress!, literal.utf8Start, bytes.count) == 0)
    }
}
