import CutoverCore
import XCTest

final class HTTPForwardingTests: XCTestCase {
    func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    func testHopByHopFields_andFieldsNamedInConnection_areNotForwardedUpstream() {
        let head = HTTPRequestHead(
            method: "POST", target: "/x",
            headers: [
                ("Host", "app"), ("Connection", "keep-alive, X-Secret"), ("Keep-Alive", "timeout=5"),
                ("Proxy-Connection", "keep-alive"), ("TE", "trailers"), ("Trailer", "X-Sum"), ("Upgrade", "websocket"),
                ("x-secret", "1"), ("Transfer-Encoding", "chunked"), ("Accept", "*/*"),
            ])
        let upstream = HTTPForwarding.upstreamRequest(head, clientAddress: "192.0.2.7", proto: "http", upgrading: false)
        XCTAssertEqual(
            upstream.headers,
            [
                ("Host", "app"), ("Transfer-Encoding", "chunked"), ("Accept", "*/*"), ("X-Forwarded-For", "192.0.2.7"),
                ("X-Forwarded-Proto", "http"), ("Forwarded", "for=192.0.2.7;proto=http"), ("Via", "1.1 cutover"),
            ])
        XCTAssertEqual(upstream.version, .http1_1)
        XCTAssertEqual(upstream.method, "POST")
        XCTAssertEqual(upstream.target, "/x")
    }

    /// Positions below 64 are kept as bits, later ones in a list: a hop-by-hop field, or one named in
    /// `Connection`, is dropped wherever it stands in a long head.
    func testHopByHopFields_pastTheSixtyFourthField_areStillDropped() {
        var fields: [(String, String)] = [("Host", "app")]
        for index in 0..<70 { fields.append(("X-Filler-\(index)", "v")) }
        fields += [("Connection", "X-Named"), ("Keep-Alive", "timeout=5"), ("X-Named", "secret"), ("Accept", "*/*")]
        fields.insert(("TE", "trailers"), at: 63)
        fields.insert(("X-Named", "early"), at: 64)
        let head = HTTPRequestHead(method: "GET", target: "/", headers: HTTPHeaders(fields))
        let upstream = HTTPForwarding.upstreamRequest(head, clientAddress: "192.0.2.7", proto: "http", upgrading: false)
        for dropped in ["Connection", "Keep-Alive", "TE", "X-Named"] {
            XCTAssertFalse(upstream.headers.contains(dropped), dropped)
        }
        XCTAssertEqual(upstream.headers.values(named: "Accept"), ["*/*"])
        XCTAssertEqual(upstream.headers.count, 1 + 70 + 1 + 4, "Host, the fillers and Accept, then the four the proxy adds")
        var written: [UInt8] = []
        HTTPForwarding.writeUpstreamRequest(head, origin: .init(address: "192.0.2.7", proto: "http"), upgrading: false, into: &written)
        var built: [UInt8] = []
        upstream.write(into: &built)
        XCTAssertEqual(text(written), text(built))
    }

    func testConnectionCannotStripFramingOrHost() {
        let head = HTTPRequestHead(
            method: "POST", target: "/",
            headers: [("Host", "app"), ("Content-Length", "3"), ("Connection", "Content-Length, host, transfer-encoding")])
        let upstream = HTTPForwarding.upstreamRequest(head, clientAddress: "10.0.0.1", proto: "http", upgrading: false)
        XCTAssertEqual(upstream.headers["Content-Length"], "3")
        XCTAssertEqual(upstream.headers["Host"], "app")
        XCTAssertFalse(upstream.headers.contains("Connection"))
    }

    /// From a trusted proxy (`trusted_proxies`), the forwarding fields it sent are kept and appended to.
    func testForwardingFields_fromATrustedProxy_appendToWhatItSent() {
        let head = HTTPRequestHead(
            method: "GET", target: "/",
            headers: [
                ("Host", "app"), ("X-Forwarded-For", "203.0.113.1"), ("X-Forwarded-Proto", "https"),
                ("Forwarded", "for=203.0.113.1"), ("Via", "1.1 edge"),
            ])
        let upstream = HTTPForwarding.upstreamRequest(head, clientAddress: "2001:db8::1", proto: "http", trusted: true, upgrading: false)
        XCTAssertEqual(upstream.headers.values(named: "X-Forwarded-For"), ["203.0.113.1, 2001:db8::1"])
        XCTAssertEqual(upstream.headers.values(named: "X-Forwarded-Proto"), ["http"])
        XCTAssertEqual(upstream.headers.values(named: "Forwarded"), ["for=203.0.113.1, for=\"[2001:db8::1]\";proto=http"])
        XCTAssertEqual(upstream.headers.values(named: "Via"), ["1.1 edge, 1.1 cutover"])
    }

    /// From anyone else, X-Forwarded-For and Forwarded are claims about itself: replaced, every copy.
    func testForwardingFields_fromAnUntrustedClient_areReplaced() {
        let head = HTTPRequestHead(
            method: "GET", target: "/",
            headers: [
                ("Host", "app"), ("X-Forwarded-For", "203.0.113.1"), ("x-forwarded-for", "6.6.6.6"),
                ("Forwarded", "for=203.0.113.1"), ("Via", "1.1 edge"),
            ])
        let upstream = HTTPForwarding.upstreamRequest(head, clientAddress: "192.0.2.7", proto: "https", upgrading: false)
        XCTAssertEqual(upstream.headers.values(named: "X-Forwarded-For"), ["192.0.2.7"])
        XCTAssertEqual(upstream.headers.values(named: "Forwarded"), ["for=192.0.2.7;proto=https"])
        XCTAssertEqual(upstream.headers.values(named: "X-Forwarded-Proto"), ["https"])
        XCTAssertEqual(upstream.headers.values(named: "Via"), ["1.1 edge, 1.1 cutover"], "Via is a trace, not a claim: appended")
    }

    func testForwardedNode_quotesAndBracketsIPv6Only() {
        XCTAssertEqual(HTTPForwarding.forwardedNode("192.0.2.1"), "192.0.2.1")
        XCTAssertEqual(HTTPForwarding.forwardedNode("::1"), "\"[::1]\"")
        XCTAssertEqual(HTTPForwarding.forwardedNode("[fe80::1]"), "\"[fe80::1]\"")
    }

    func testHTTP10Client_goesUpstreamAsHTTP10WithVia10() {
        let head = HTTPRequestHead(method: "GET", target: "/", version: .http1_0, headers: [("Connection", "keep-alive")])
        let upstream = HTTPForwarding.upstreamRequest(head, clientAddress: "127.0.0.1", proto: "http", upgrading: false)
        XCTAssertEqual(upstream.version, .http1_0)
        XCTAssertEqual(upstream.headers["Via"], "1.0 cutover")
        XCTAssertFalse(upstream.headers.contains("Connection"))
    }

    func testUpgradingRequest_keepsUpgradeAndSaysConnectionUpgrade() {
        let head = HTTPRequestHead(
            method: "GET", target: "/ws",
            headers: [("Host", "app"), ("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Key", "k")])
        let upstream = HTTPForwarding.upstreamRequest(head, clientAddress: "127.0.0.1", proto: "http", upgrading: true)
        XCTAssertEqual(upstream.headers.values(named: "Upgrade"), ["websocket"])
        XCTAssertEqual(upstream.headers.values(named: "Connection"), ["upgrade"])
        XCTAssertEqual(upstream.headers["Sec-WebSocket-Key"], "k")
        let refused = HTTPForwarding.upstreamRequest(head, clientAddress: "127.0.0.1", proto: "http", upgrading: false)
        XCTAssertFalse(refused.headers.contains("Upgrade"))
        XCTAssertFalse(refused.headers.contains("Connection"))
    }

    func testClientResponse_stripsHopByHopKeepsTransferEncodingAndAddsVia() {
        let head = HTTPResponseHead(
            version: .http1_1, status: 200, reason: "OK",
            headers: [("Connection", "X-Internal"), ("X-Internal", "1"), ("Keep-Alive", "timeout=5"), ("Transfer-Encoding", "chunked")])
        let response = HTTPForwarding.clientResponse(head, requestVersion: .http1_1, keepClientAlive: true, upgrading: false)
        XCTAssertEqual(response.headers, [("Transfer-Encoding", "chunked"), ("Via", "1.1 cutover")])
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.reason, "OK")
    }

    func testClientResponse_statesTheConnectionsFate() {
        let upstream10 = HTTPResponseHead(version: .http1_0, status: 200, reason: "OK", headers: [("Content-Length", "0")])
        let closing = HTTPForwarding.clientResponse(upstream10, requestVersion: .http1_1, keepClientAlive: false, upgrading: false)
        XCTAssertEqual(closing.headers.values(named: "Connection"), ["close"])
        XCTAssertEqual(closing.version, .http1_1)
        XCTAssertEqual(closing.headers["Via"], "1.0 cutover")
        let keptFor10 = HTTPForwarding.clientResponse(upstream10, requestVersion: .http1_0, keepClientAlive: true, upgrading: false)
        XCTAssertEqual(keptFor10.headers.values(named: "Connection"), ["keep-alive"])
        let keptFor11 = HTTPForwarding.clientResponse(upstream10, requestVersion: .http1_1, keepClientAlive: true, upgrading: false)
        XCTAssertFalse(keptFor11.headers.contains("Connection"))
    }

    func testInterimResponse_getsNoConnectionField() {
        let response = HTTPForwarding.clientResponse(
            HTTPResponseHead(status: 100), requestVersion: .http1_1, keepClientAlive: false, upgrading: false)
        XCTAssertEqual(response.headers, [("Via", "1.1 cutover")])
    }

    func testSwitchingProtocolsResponse_keepsUpgrade() {
        let head = HTTPResponseHead(
            status: 101, headers: [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", "a")])
        let response = HTTPForwarding.clientResponse(head, requestVersion: .http1_1, keepClientAlive: true, upgrading: true)
        XCTAssertEqual(
            response.headers,
            [("Upgrade", "websocket"), ("Sec-WebSocket-Accept", "a"), ("Via", "1.1 cutover"), ("Connection", "upgrade")])
        let refused = HTTPForwarding.clientResponse(
            HTTPResponseHead(status: 200, headers: [("Upgrade", "h2c")]), requestVersion: .http1_1, keepClientAlive: true, upgrading: true)
        XCTAssertFalse(refused.headers.contains("Upgrade"))
    }

    // MARK: Serializing

    func testRequestHead_serializesAndParsesBack() throws {
        let head = HTTPRequestHead(method: "PUT", target: "/a?b", version: .http1_1, headers: [("Host", "h"), ("X-A", "1")])
        var buffer: [UInt8] = Array("left".utf8)
        head.write(into: &buffer)
        XCTAssertEqual(text(buffer), "leftPUT /a?b HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n")
        guard case .complete(let parsed, _) = try parseRequest(Array(buffer.dropFirst(4))) else { return XCTFail("incomplete") }
        XCTAssertEqual(parsed, head)
    }

    func testResponseHead_serializesStatusLine() {
        var buffer: [UInt8] = []
        HTTPResponseHead(version: .http1_0, status: 404, headers: [("Content-Length", "0")]).write(into: &buffer)
        XCTAssertEqual(text(buffer), "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        buffer = []
        HTTPResponseHead(status: 200, reason: "OK").write(into: &buffer)
        XCTAssertEqual(text(buffer), "HTTP/1.1 200 OK\r\n\r\n")
    }

    func testErrorResponse_isACompleteTextResponse() {
        XCTAssertEqual(
            text(errorResponse(status: 502, message: "upstream refused", close: true)),
            "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 17\r\n"
                + "Connection: close\r\n\r\nupstream refused\n")
        XCTAssertEqual(
            text(HTTPErrorResponse.errorResponse(status: 503, message: "draining", extraHeaders: [("Retry-After", "5")], close: false)),
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 9\r\n"
                + "Retry-After: 5\r\n\r\ndraining\n")
    }

    func testReasonPhrases_coverTheStatusesTheProxyAnswers() {
        let expected = [
            400: "Bad Request", 413: "Content Too Large", 414: "URI Too Long", 431: "Request Header Fields Too Large",
            501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
            505: "HTTP Version Not Supported", 100: "Continue", 299: "Success",
        ]
        for (status, phrase) in expected {
            XCTAssertEqual(HTTPErrorResponse.reasonPhrase(status), phrase)
        }
    }

    // MARK: Headers

    func testHeaders_lookUpCaseInsensitivelyAndKeepOrder() {
        var headers: HTTPHeaders = [("Accept", "a"), ("ACCEPT", "b"), ("Host", "h")]
        XCTAssertEqual(headers["accept"], "a")
        XCTAssertEqual(headers.values(named: "Accept"), ["a", "b"])
        XCTAssertTrue(headers.contains("HOST"))
        XCTAssertNil(headers["Missing"])
        headers.add(name: "X", value: "1")
        headers.remove(named: "accept")
        XCTAssertEqual(headers, [("Host", "h"), ("X", "1")])
        XCTAssertNotEqual(headers, [("host", "h"), ("X", "1")])
        headers.replace(name: "host", value: "g")
        XCTAssertEqual(headers, [("X", "1"), ("host", "g")])
    }
}

/// The hot path writes rewritten heads without building them; it must produce exactly the bytes of
/// the head-building form, whatever the fields.
final class HTTPForwardingWriterTests: XCTestCase {
    static let requests: [HTTPRequestHead] = [
        HTTPRequestHead(method: "GET", target: "/", headers: [("Host", "a")]),
        HTTPRequestHead(method: "POST", target: "/x?y=1", headers: [
            ("Host", "app"), ("Connection", "keep-alive, X-Secret"), ("Keep-Alive", "timeout=5"), ("x-secret", "1"),
            ("Transfer-Encoding", "chunked"), ("X-Forwarded-For", "203.0.113.1"), ("X-Forwarded-For", "198.51.100.2"),
            ("x-forwarded-proto", "https"), ("X-Forwarded-Proto", "ws"), ("Forwarded", ""), ("Via", "1.1 edge"),
        ]),
        HTTPRequestHead(method: "GET", target: "/ws", headers: [("Host", "a"), ("Connection", "Upgrade"), ("Upgrade", "websocket"), ("TE", "trailers")]),
        HTTPRequestHead(method: "GET", target: "/", version: .http1_0, headers: [("Connection", "keep-alive"), ("Proxy-Connection", "x")]),
    ]

    func testWrittenRequest_equalsBuiltRequest() {
        for head in Self.requests {
            for upgrading in [false, true] {
                for address in ["192.0.2.7", "2001:db8::1"] {
                    for trusted in [false, true] {
                        var built: [UInt8] = []
                        HTTPForwarding.upstreamRequest(head, clientAddress: address, proto: "http", trusted: trusted, upgrading: upgrading).write(into: &built)
                        var written: [UInt8] = []
                        HTTPForwarding.writeUpstreamRequest(
                            head, origin: .init(address: address, proto: "http", trusted: trusted), upgrading: upgrading, into: &written)
                        XCTAssertEqual(
                            String(decoding: written, as: UTF8.self), String(decoding: built, as: UTF8.self), "\(head) upgrading \(upgrading) trusted \(trusted)")
                    }
                }
            }
        }
    }

    func testWrittenResponse_equalsBuiltResponse() {
        let responses: [HTTPResponseHead] = [
            HTTPResponseHead(status: 200, headers: [("Content-Length", "2")]),
            HTTPResponseHead(version: .http1_0, status: 200, headers: [("Connection", "close, X-Hop"), ("X-Hop", "1"), ("Via", "1.0 app")]),
            HTTPResponseHead(status: 101, headers: [("Connection", "Upgrade"), ("Upgrade", "websocket")]),
            HTTPResponseHead(status: 100),
            HTTPResponseHead(status: 204, headers: [("Keep-Alive", "timeout=5"), ("Trailer", "X"), ("Transfer-Encoding", "chunked")]),
        ]
        for head in responses {
            for (version, keep, upgrading) in [(HTTPVersion.http1_1, true, false), (.http1_1, false, false), (.http1_0, true, false), (.http1_1, true, true)] {
                var built: [UInt8] = []
                HTTPForwarding.clientResponse(head, requestVersion: version, keepClientAlive: keep, upgrading: upgrading).write(into: &built)
                var written: [UInt8] = []
                HTTPForwarding.writeClientResponse(head, requestVersion: version, keepClientAlive: keep, upgrading: upgrading, into: &written)
                XCTAssertEqual(String(decoding: written, as: UTF8.self), String(decoding: built, as: UTF8.self), "\(head) \(version) \(keep) \(upgrading)")
            }
        }
    }

    /// Issue 17, defect 4: the maintenance bypass header carries a secret and never reaches a backend.
    func testBypassHeader_isRemovedForTheBackend_inAnyCase() {
        let gate = GateConfig(bypass: MaintenanceBypass(header: HTTPHeaderField(name: "X-Cutover-Bypass", value: "s3cret")))
        let headers: HTTPHeaders = [("Host", "app"), ("x-cutover-bypass", "s3cret"), ("Accept", "*/*"), ("X-CUTOVER-BYPASS", "other")]
        XCTAssertEqual(gate.fieldsForBackend(headers), [("Host", "app"), ("Accept", "*/*")])
        XCTAssertNil(gate.fieldsForBackend([("Host", "app")]), "nothing to remove: no copy")
        XCTAssertNil(GateConfig().fieldsForBackend(headers), "no bypass header configured: the fields pass")
    }
}

/// Issue 20, defects 2 and 3: what reaches the backend names one authority and one length.
final class HTTPForwardingNormalisationTests: XCTestCase {
    private func parse(_ text: String) throws -> HTTPRequestHead {
        let bytes = Array(text.utf8)
        let parsed = try bytes.withUnsafeBytes { raw in
            try HTTPParser.parseRequestHead(raw, limits: HTTPHeadLimits())
        }
        guard case .complete(let head, _) = parsed else {
            XCTFail("incomplete head")
            return HTTPRequestHead(method: "", target: "")
        }
        return head
    }

    private func upstreamText(_ head: HTTPRequestHead) -> String {
        var buffer: [UInt8] = []
        HTTPForwarding.writeUpstreamRequest(head, origin: .init(address: "192.0.2.1", proto: "http"), upgrading: false, into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }

    func testAbsoluteFormTarget_goesUpstreamOriginFormWithHostReplacedByItsAuthority() throws {
        let head = try parse("GET http://internal.admin/secret?x=1 HTTP/1.1\r\nHost: public.example\r\nAccept: */*\r\n\r\n").originFormed()
        XCTAssertEqual(head.target, "/secret?x=1")
        XCTAssertEqual(head.headers.values(named: "Host"), ["internal.admin"])
        let sent = upstreamText(head)
        XCTAssertTrue(sent.hasPrefix("GET /secret?x=1 HTTP/1.1\r\nHost: internal.admin\r\nAccept: */*\r\n"), sent)
        XCTAssertFalse(sent.contains("public.example"), sent)
    }

    func testAbsoluteFormTarget_emptyPathBecomesSlash_orAsteriskForOptions() throws {
        XCTAssertEqual(try parse("GET HTTP://Example.COM:8080 HTTP/1.1\r\nHost: x\r\n\r\n").originFormed().target, "/")
        XCTAssertEqual(try parse("GET http://a.example?q HTTP/1.1\r\nHost: a.example\r\n\r\n").originFormed().target, "/?q")
        XCTAssertEqual(try parse("OPTIONS http://a.example HTTP/1.1\r\nHost: a.example\r\n\r\n").originFormed().target, "*")
        XCTAssertEqual(try parse("GET http://a.example/p#frag HTTP/1.1\r\nHost: a.example\r\n\r\n").originFormed().target, "/p")
        // HTTP/1.0 may omit Host: the target's authority is added.
        XCTAssertEqual(try parse("GET http://a.example/ HTTP/1.0\r\n\r\n").originFormed().headers["Host"], "a.example")
    }

    func testAbsoluteFormTarget_withUserinfoOtherSchemeOrNoHost_isRejected400() throws {
        for request in [
            "GET http://user@a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
            "GET ftp://a.example/file HTTP/1.1\r\nHost: a.example\r\n\r\n",
            "GET http:///path HTTP/1.1\r\nHost: a.example\r\n\r\n",
        ] {
            let head = try parse(request)
            XCTAssertThrowsError(try head.originFormed(), request) { XCTAssertEqual(($0 as? HTTPParseError)?.status, 400, request) }
        }
    }

    func testOriginFormTarget_isLeftAsItIs() throws {
        let head = try parse("GET /a HTTP/1.1\r\nHost: a.example\r\n\r\n")
        XCTAssertEqual(try head.originFormed(), head)
    }

    func testContentLengthList_isForwardedAsOneNormalisedField() throws {
        let head = try parse("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\n")
        XCTAssertEqual(try head.bodyFraming(), .contentLength(3))
        let sent = upstreamText(head)
        XCTAssertEqual(sent.components(separatedBy: "Content-Length").count - 1, 1, sent)
        XCTAssertTrue(sent.contains("\r\nContent-Length: 3\r\n"), sent)
        XCTAssertFalse(sent.contains("3, 3"), sent)
        XCTAssertEqual(HTTPForwarding.upstreamRequest(head, clientAddress: "192.0.2.1", proto: "http", upgrading: false).headers.values(named: "Content-Length"), ["3"])
    }

    func testPlainContentLength_isForwardedInPlace() throws {
        let head = try parse("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nAccept: */*\r\n\r\n")
        XCTAssertTrue(upstreamText(head).contains("Host: a\r\nContent-Length: 3\r\nAccept: */*\r\n"))
    }

    /// Received lines are copied in runs; one with other whitespace than a single space after the
    /// colon is written normalised, and edits land where they did field by field.
    func testParsedRequest_isWrittenAsBefore_linesCopiedOrNormalised() throws {
        let head = try parse(
            "GET / HTTP/1.1\r\nHost: a\r\nX-Tab:\tv\r\nX-Trail: v  \r\nX-Tight:v\r\nAccept: */*\r\nConnection: keep-alive\r\n"
                + "Via: 1.1 edge\r\nX-Empty: \r\nUser-Agent: t\r\n\r\n")
        XCTAssertEqual(
            upstreamText(head),
            "GET / HTTP/1.1\r\nHost: a\r\nX-Tab: v\r\nX-Trail: v\r\nX-Tight: v\r\nAccept: */*\r\nVia: 1.1 edge, 1.1 cutover\r\nX-Empty: \r\n"
                + "User-Agent: t\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: http\r\nForwarded: for=192.0.2.1;proto=http\r\n\r\n")
        var built: [UInt8] = []
        HTTPForwarding.upstreamRequest(head, clientAddress: "192.0.2.1", proto: "http", upgrading: false).write(into: &built)
        XCTAssertEqual(String(decoding: built, as: UTF8.self), upstreamText(head))
    }

    func testParsedResponse_dropsTheHopByHopLineBetweenCopiedRuns() throws {
        let bytes = Array("HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 2\r\nConnection: keep-alive\r\nX-A:b\r\nETag: \"x\"\r\n\r\n".utf8)
        guard case .complete(let head, _) = try bytes.withUnsafeBytes({ try HTTPParser.parseResponseHead($0, limits: HTTPHeadLimits()) }) else {
            return XCTFail("incomplete head")
        }
        var buffer: [UInt8] = []
        HTTPForwarding.writeClientResponse(head, requestVersion: .http1_1, keepClientAlive: true, upgrading: false, into: &buffer)
        XCTAssertEqual(
            String(decoding: buffer, as: UTF8.self), "HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 2\r\nX-A: b\r\nETag: \"x\"\r\nVia: 1.1 cutover\r\n\r\n")
    }

    func testResponseContentLengthList_reachesTheClientAsOneField() {
        let head = HTTPResponseHead(status: 200, headers: [("Content-Length", "2, 2")])
        var buffer: [UInt8] = []
        HTTPForwarding.writeClientResponse(head, requestVersion: .http1_1, keepClientAlive: true, upgrading: false, into: &buffer)
        let sent = String(decoding: buffer, as: UTF8.self)
        XCTAssertTrue(sent.contains("\r\nContent-Length: 2\r\n"), sent)
        XCTAssertFalse(sent.contains("2, 2"), sent)
    }
}
