/// The pure half of an `http` probe: the request bytes to send, and the verdict on the bytes received.
///
/// The I/O layer connects, sends `request`, and calls `evaluate` after every read until it returns a
/// result (or the timeout passes); nothing here touches a socket or a clock.
public enum HTTPProbe {
    /// The most response body bytes looked at for `body_contains`; a health page is small.
    public static let maxBodyBytes = 65_536
    /// Limits on the response head: as generous as for live upstream answers.
    public static let headLimits = HTTPHeadLimits(maxHeadBytes: 65_536, maxHeaderCount: 256, maxStartLineBytes: 8_192)
    /// The most bytes worth reading before a verdict must be reached.
    public static var maxResponseBytes: Int { headLimits.maxHeadBytes + maxBodyBytes }

    /// The request a probe sends: its method and path, `Host` (the probe's, else the endpoint's
    /// address as probed), a `User-Agent`, `Connection: close`, then the configured headers, which
    /// replace the defaults of the same name.
    ///
    /// - Parameter address: the endpoint address with the probe's port applied.
    public static func request(_ probe: ProbeConfig, address: HostPort) -> [UInt8] {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: probe.host ?? address.description)
        headers.add(name: "User-Agent", value: "cutover-probe/\(CutoverVersion.string)")
        headers.add(name: "Connection", value: "close")
        for field in probe.headers {
            headers.replace(name: field.name, value: field.value)
        }
        var text = "\(probe.method) \(probe.path) HTTP/1.1\r\n"
        for field in headers {
            text += "\(field.name): \(field.value)\r\n"
        }
        text += "\r\n"
        return Array(text.utf8)
    }

    /// The verdict on the response bytes received so far, or `nil` when more are needed.
    ///
    /// - Parameters:
    ///   - received: every byte read from the endpoint, from the first.
    ///   - closed: the endpoint closed (or reading must stop at `maxResponseBytes`): decide now.
    ///   - reset: the connection was reset rather than closed.
    public static func evaluate(_ received: [UInt8], probe: ProbeConfig, closed: Bool, reset: Bool = false) -> ProbeOutcome? {
        var start = 0
        // Interim 1xx answers (a 100 Continue) come before the real one: skip them.
        while true {
            let parsed = received[start...].withUnsafeBytes { raw in
                Result { () throws(HTTPParseError) in try HTTPParser.parseResponseHead(raw, limits: headLimits) }
            }
            switch parsed {
            case .failure(let error):
                return .badResponse(path: probe.path, reason: error.reason)
            case .success(.incomplete):
                return closed ? .closedEarly(path: probe.path, reset: reset) : nil
            case .success(.complete(let head, let headLength)):
                if (100...199).contains(head.status) && head.status != 101 {
                    start += headLength
                    continue
                }
                return verdict(head, body: received[(start + headLength)...], probe: probe, closed: closed)
            }
        }
    }

    /// Status first, then (if asked) the body.
    private static func verdict(_ head: HTTPResponseHead, body: ArraySlice<UInt8>, probe: ProbeConfig, closed: Bool) -> ProbeOutcome? {
        let expected = probe.expectStatus.contains { $0.contains(head.status) }
        guard expected, let wanted = probe.bodyContains else {
            return .httpStatus(head.status, path: probe.path, expected: expected)
        }
        let needle = Array(wanted.utf8)
        let framing: BodyFraming
        do {
            framing = try head.bodyFraming(requestMethod: probe.method)
        } catch {
            return .badResponse(path: probe.path, reason: error.reason)
        }
        let found = HTTPProbe.bodyContains(needle, body: body, framing: framing)
        if found { return .httpStatus(head.status, path: probe.path, expected: true) }
        // Not found yet: decide only once the whole body (or as much as is looked at) is here.
        let complete: Bool
        switch framing {
        case .none: complete = true
        case .contentLength(let length): complete = Int64(body.count) >= length
        case .chunked, .untilClose: complete = false
        }
        return complete || closed || body.count >= maxBodyBytes ? .bodyLacks(wanted, path: probe.path) : nil
    }

    /// Whether the body (de-chunked when chunked, cut at `maxBodyBytes`) contains `needle`.
    static func bodyContains(_ needle: [UInt8], body: ArraySlice<UInt8>, framing: BodyFraming) -> Bool {
        switch framing {
        case .none: return needle.isEmpty
        case .contentLength(let length): return contains(needle, in: body.prefix(Int(min(length, Int64(maxBodyBytes)))))
        case .untilClose: return contains(needle, in: body.prefix(maxBodyBytes))
        case .chunked: return contains(needle, in: ArraySlice(dechunk(body).prefix(maxBodyBytes)))
        }
    }

    /// The data of the complete chunks in `body`; stops at the last-chunk, a partial chunk or a
    /// malformed size line (a probe only needs what is there, not a validation).
    static func dechunk(_ body: ArraySlice<UInt8>) -> [UInt8] {
        var data: [UInt8] = []
        var index = body.startIndex
        while let lineEnd = firstCRLF(in: body, from: index) {
            var size = 0
            for byte in body[index..<lineEnd] {
                guard let digit = hexValue(byte) else { break }
                size = size * 16 + digit
                if size > maxBodyBytes { return data }
            }
            let dataStart = lineEnd + 2
            guard size > 0, dataStart + size <= body.endIndex else { return data }
            data.append(contentsOf: body[dataStart..<(dataStart + size)])
            index = dataStart + size + 2
            guard index <= body.endIndex else { return data }
        }
        return data
    }

    private static func firstCRLF(in bytes: ArraySlice<UInt8>, from start: Int) -> Int? {
        var i = start
        while i + 1 < bytes.endIndex {
            if bytes[i] == HTTPSyntax.cr && bytes[i + 1] == HTTPSyntax.lf { return i }
            i += 1
        }
        return nil
    }

    private static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return Int(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return Int(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return Int(byte - UInt8(ascii: "A") + 10)
        default: return nil
        }
    }

    private static func contains(_ needle: [UInt8], in haystack: ArraySlice<UInt8>) -> Bool {
        guard !needle.isEmpty else { return true }
        guard haystack.count >= needle.count else { return false }
        var i = haystack.startIndex
        while i + needle.count <= haystack.endIndex {
            if haystack[i] == needle[0] && haystack[i..<(i + needle.count)].elementsEqual(needle) { return true }
            i += 1
        }
        return false
    }
}
