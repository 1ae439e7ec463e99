/// The short text/plain responses Cutover writes itself (400, 502, 503, 504, …) and the standard
/// reason phrases.
public enum HTTPErrorResponse {
    /// A complete HTTP/1.1 response: status line with the standard reason phrase,
    /// `Content-Type: text/plain; charset=utf-8`, `Content-Length`, the extra headers,
    /// `Connection: close` when `close`, and `message` plus a newline as the body.
    public static func errorResponse(
        status: Int, message: String, extraHeaders: [(String, String)] = [], close: Bool
    ) -> [UInt8] {
        let body = message + "\n"
        var headers: HTTPHeaders = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", String(body.utf8.count)),
        ]
        for (name, value) in extraHeaders {
            headers.add(name: name, value: value)
        }
        if close { headers.add(name: "Connection", value: "close") }
        let head = HTTPResponseHead(version: .http1_1, status: status, reason: reasonPhrase(status), headers: headers)
        var buffer: [UInt8] = []
        buffer.reserveCapacity(128 + body.utf8.count)
        head.write(into: &buffer)
        buffer.append(contentsOf: body.utf8)
        return buffer
    }

    /// The standard reason phrase for a status (RFC 9110 §15), e.g. `Bad Gateway` for 502;
    /// unknown codes get a generic phrase for their class.
    public static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 100: return "Continue"
        case 101: return "Switching Protocols"
        case 200: return "OK"
        case 201: return "Created"
        case 202: return "Accepted"
        case 204: return "No Content"
        case 206: return "Partial Content"
        case 301: return "Moved Permanently"
        case 302: return "Found"
        case 303: return "See Other"
        case 304: return "Not Modified"
        case 307: return "Temporary Redirect"
        case 308: return "Permanent Redirect"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 409: return "Conflict"
        case 411: return "Length Required"
        case 413: return "Content Too Large"
        case 414: return "URI Too Long"
        case 415: return "Unsupported Media Type"
        case 417: return "Expectation Failed"
        case 421: return "Misdirected Request"
        case 426: return "Upgrade Required"
        case 429: return "Too Many Requests"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 501: return "Not Implemented"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        case 505: return "HTTP Version Not Supported"
        case 100..<200: return "Informational"
        case 200..<300: return "Success"
        case 300..<400: return "Redirection"
        case 400..<500: return "Client Error"
        default: return "Server Error"
        }
    }
}

/// A complete short text/plain response for a status Cutover answers itself; see
/// `HTTPErrorResponse.errorResponse(status:message:extraHeaders:close:)`.
public func errorResponse(status: Int, message: String, extraHeaders: [(String, String)] = [], close: Bool) -> [UInt8] {
    HTTPErrorResponse.errorResponse(status: status, message: message, extraHeaders: extraHeaders, close: close)
}
