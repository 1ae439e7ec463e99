/// How the body that follows a head is delimited (RFC 9112 §6.3).
public enum BodyFraming: Sendable, Equatable {
    /// No body: the next message starts right after the head.
    case none
    /// Exactly this many bytes follow (possibly 0).
    case contentLength(Int64)
    /// Chunked transfer coding: feed the bytes to a `ChunkedBodyScanner` to find the end.
    case chunked
    /// The body runs until the upstream closes the connection (responses only).
    case untilClose
}

extension HTTPRequestHead {
    /// How this request's body is delimited: chunked, Content-Length or none.
    ///
    /// Throws 400 for Content-Length with Transfer-Encoding, a bad or conflicting Content-Length,
    /// Transfer-Encoding in an HTTP/1.0 request, or codings not ending in a single `chunked`;
    /// 501 for any other transfer coding (e.g. `gzip, chunked`).
    public func bodyFraming() throws(HTTPParseError) -> BodyFraming {
        if headers.contains("Transfer-Encoding") {
            if version == .http1_0 { throw .badRequest("Transfer-Encoding in an HTTP/1.0 request") }
            if headers.contains("Content-Length") {
                throw .badRequest("Content-Length and Transfer-Encoding both present")
            }
            switch BodyFraming.transferCodings(of: headers) {
            case .chunked: return .chunked
            case .empty: throw .badRequest("empty Transfer-Encoding")
            case .chunkedTwice: throw .badRequest("chunked applied more than once")
            case .notChunkedLast: throw .badRequest("Transfer-Encoding does not end with chunked")
            case .unsupportedCoding:
                throw HTTPParseError(status: 501, reason: "transfer coding other than chunked")
            }
        }
        if let length = try BodyFraming.contentLength(of: headers, errorStatus: 400) {
            return .contentLength(length)
        }
        return .none
    }
}

extension HTTPResponseHead {
    /// How this response's body is delimited, given the method of the request it answers.
    ///
    /// 1xx, 204, 304 and responses to HEAD have none; a final `chunked` coding means chunked, any
    /// other Transfer-Encoding means until close; then Content-Length; else until close. Throws 502
    /// for a bad Content-Length, Content-Length with Transfer-Encoding, or `chunked` twice.
    /// - Important: a 2xx answer to CONNECT is reported as `.none`; the connection becomes a tunnel.
    public func bodyFraming(requestMethod: String) throws(HTTPParseError) -> BodyFraming {
        if status < 200 || status == 204 || status == 304 || requestMethod == "HEAD" {
            return .none
        }
        if requestMethod == "CONNECT", status < 300 { return .none }
        if headers.contains("Transfer-Encoding") {
            // RFC 9112 §6.3 lets Transfer-Encoding override, but we forward both headers verbatim
            // and a client could pick the other one: refuse rather than relay an ambiguity.
            if headers.contains("Content-Length") {
                throw HTTPParseError(status: 502, reason: "upstream response: Content-Length and Transfer-Encoding both present")
            }
            switch BodyFraming.transferCodings(of: headers) {
            // Other codings (gzip, chunked) pass through untouched: only the chunked framing matters here.
            case .chunked, .unsupportedCoding: return .chunked
            case .chunkedTwice:
                throw HTTPParseError(status: 502, reason: "upstream response: chunked applied more than once")
            case .empty, .notChunkedLast: return .untilClose
            }
        }
        if let length = try BodyFraming.contentLength(of: headers, errorStatus: 502) {
            return .contentLength(length)
        }
        return .untilClose
    }
}

extension BodyFraming {
    /// What a Transfer-Encoding list amounts to for a proxy that only decodes chunked.
    enum TransferCodings {
        case chunked
        case empty
        case chunkedTwice
        case notChunkedLast
        /// Ends in a single chunked but also lists another coding.
        case unsupportedCoding
    }

    /// Reads every Transfer-Encoding field as one comma-separated list (RFC 9112 §6.1).
    static func transferCodings(of headers: HTTPHeaders) -> TransferCodings {
        var count = 0
        var chunkedCount = 0
        var lastIsChunked = false
        headers.forEachValue(named: "transfer-encoding") { value in
            HTTPSyntax.forEachListElement(value) { element in
                // Parameters (`;q=…`) do not change which coding it is.
                var nameEnd = element.firstIndex(of: HTTPSyntax.semicolon) ?? element.count
                while nameEnd > 0, HTTPSyntax.isWhitespace(element[nameEnd - 1]) { nameEnd -= 1 }
                lastIsChunked = HTTPSyntax.equalsIgnoringCase(UnsafeRawBufferPointer(rebasing: element[0..<nameEnd]), lowercase: "chunked")
                if lastIsChunked { chunkedCount += 1 }
                count += 1
                return true
            }
            return true
        }
        if count == 0 { return .empty }
        if chunkedCount > 1 { return .chunkedTwice }
        if !lastIsChunked { return .notChunkedLast }
        return count == 1 ? .chunked : .unsupportedCoding
    }

    /// The Content-Length, if any: every field and list element must be the same run of digits
    /// (RFC 9112 §6.3 lets identical repeats count as one) and fit in an Int64.
    static func contentLength(of headers: HTTPHeaders, errorStatus: Int) throws(HTTPParseError) -> Int64? {
        let prefix = errorStatus == 502 ? "upstream response: " : ""
        var result: Int64?
        var failure: String?
        headers.forEachValue(named: "content-length") { value in
            var elements = 0
            HTTPSyntax.forEachListElement(value) { element in
                elements += 1
                var number: Int64 = 0
                for byte in element {
                    let digit = byte &- UInt8(ascii: "0")
                    guard digit < 10 else {
                        failure = "Content-Length is not a number"
                        return false
                    }
                    let (times10, overflow1) = number.multipliedReportingOverflow(by: 10)
                    let (sum, overflow2) = times10.addingReportingOverflow(Int64(digit))
                    if overflow1 || overflow2 {
                        failure = "Content-Length too large"
                        return false
                    }
                    number = sum
                }
                if let previous = result, previous != number {
                    failure = "conflicting Content-Length values"
                    return false
                }
                result = number
                return true
            }
            if failure == nil, elements == 0 { failure = "empty Content-Length" }
            return failure == nil
        }
        if let failure { throw HTTPParseError(status: errorStatus, reason: prefix + failure) }
        return result
    }
}
