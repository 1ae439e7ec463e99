/// The header rewrites a proxy performs between client and upstream, as pure functions of heads.
public enum HTTPForwarding {
    /// The name this proxy gives itself in `Via` entries.
    public static let viaName = "cutover"

    /// The request to send upstream for a client's request.
    ///
    /// Strips hop-by-hop fields (RFC 9110 §7.6.1) and every field the client named in
    /// `Connection`, but never Transfer-Encoding, Content-Length or Host: chunked bodies are
    /// forwarded verbatim, and letting a client strip framing fields would be a smuggling vector.
    /// Appends the client to `X-Forwarded-For`, sets `X-Forwarded-Proto`, appends `Forwarded` and
    /// `Via`. When `upgrading`, keeps `Upgrade` and sends `Connection: upgrade`; otherwise sends no
    /// Connection field (HTTP/1.1 keep-alive is the default upstream). An HTTP/1.0 client's request
    /// goes upstream as HTTP/1.0 so the upstream never answers it with chunked coding.
    /// - Parameters:
    ///   - clientAddress: the client's IP address without port, IPv6 without brackets.
    ///   - proto: the scheme the client used, `http`.
    public static func upstreamRequest(
        _ head: HTTPRequestHead, clientAddress: String, proto: String, upgrading: Bool
    ) -> HTTPRequestHead {
        var result = head
        result.version = head.version == .http1_0 ? .http1_0 : .http1_1
        stripHopByHop(&result.headers, keepUpgrade: upgrading)
        result.headers.appendListElement(name: "X-Forwarded-For", element: clientAddress)
        result.headers.replace(name: "X-Forwarded-Proto", value: proto)
        result.headers.appendListElement(
            name: "Forwarded", element: "for=\(forwardedNode(clientAddress));proto=\(proto)")
        result.headers.appendListElement(name: "Via", element: "\(head.version.viaText) \(viaName)")
        if upgrading { result.headers.add(name: "Connection", value: "upgrade") }
        return result
    }

    /// The response to send the client for an upstream's response.
    ///
    /// Strips hop-by-hop fields (keeping Transfer-Encoding), appends `Via`, and states the
    /// connection's fate: `Connection: close` when `!keepClientAlive`, `Connection: keep-alive` for
    /// an HTTP/1.0 client kept alive, `Connection: upgrade` plus `Upgrade` for a 101 when
    /// `upgrading`; interim 1xx responses get no Connection field. The status line always says
    /// HTTP/1.1 (our own version, RFC 9110 §6.2).
    public static func clientResponse(
        _ head: HTTPResponseHead, requestVersion: HTTPVersion, keepClientAlive: Bool, upgrading: Bool
    ) -> HTTPResponseHead {
        var result = head
        result.version = .http1_1
        let switching = upgrading && head.status == 101
        stripHopByHop(&result.headers, keepUpgrade: switching)
        result.headers.appendListElement(name: "Via", element: "\(head.version.viaText) \(viaName)")
        if switching {
            result.headers.add(name: "Connection", value: "upgrade")
        } else if head.status < 200 {
            // An interim response (100 Continue) says nothing about the connection: the final one does.
        } else if !keepClientAlive {
            result.headers.add(name: "Connection", value: "close")
        } else if requestVersion == .http1_0 {
            result.headers.add(name: "Connection", value: "keep-alive")
        }
        return result
    }

    /// The `for=` node of a `Forwarded` element (RFC 7239 §6): IPv6 bracketed and quoted.
    public static func forwardedNode(_ address: String) -> String {
        guard address.contains(":") else { return address }
        let bare = address.hasPrefix("[") && address.hasSuffix("]") ? String(address.dropFirst().dropLast()) : address
        return "\"[\(bare)]\""
    }

    /// Fields that describe one connection and never pass through a proxy.
    static let hopByHopNames = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"]

    /// Fields a `Connection` list may not remove: they decide framing and routing.
    static let protectedNames: Set<String> = ["transfer-encoding", "content-length", "host"]

    static func stripHopByHop(_ headers: inout HTTPHeaders, keepUpgrade: Bool) {
        // Read the Connection list before removing the Connection fields themselves.
        let named = headers.connectionTokens.subtracting(protectedNames)
        var needsFiltering = !named.isEmpty
        if !needsFiltering {
            for name in hopByHopNames where headers.contains(name) {
                needsFiltering = true
                break
            }
        }
        // Most requests carry no hop-by-hop field: skip rebuilding the list for them.
        guard needsFiltering else { return }
        var kept = HTTPHeaders()
        for field in headers {
            let lowercase = field.name.lowercased()
            if keepUpgrade, lowercase == "upgrade" {
                kept.add(name: field.name, value: field.value)
                continue
            }
            if hopByHopNames.contains(lowercase) || named.contains(lowercase) { continue }
            kept.add(name: field.name, value: field.value)
        }
        headers = kept
    }
}
