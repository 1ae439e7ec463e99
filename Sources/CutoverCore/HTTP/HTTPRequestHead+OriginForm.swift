extension HTTPRequestHead {
    /// The target is origin-form already (`/path?query`, nearly every request): `originFormed()`
    /// would return the head unchanged, so the hot path need not call it (and copy the head).
    var isOriginForm: Bool { target.utf8.first == UInt8(ascii: "/") }

    /// The request as the proxy routes, logs and forwards it: an absolute-form target
    /// (`http://authority/path?query`) becomes origin-form (`/path?query`) and `Host` becomes the
    /// target's authority (RFC 9112 §3.2.2: a proxy replaces Host with the target's host
    /// information; §3.2.1: it sends origin-form to the origin). Any other head is returned as it is.
    ///
    /// So the backend, the access log and host routing all see the one authority the client named in
    /// its target, never a second one smuggled in a mismatched `Host`. Throws 400 for an absolute-form
    /// target whose scheme is not `http` or `https`, whose authority is empty or carries userinfo
    /// (RFC 9110 §4.2.1, §4.2.4).
    public func originFormed() throws(HTTPParseError) -> HTTPRequestHead {
        // The hot path: origin-form, `*` and CONNECT's authority-form never start with a letter+"://".
        guard let first = target.utf8.first, first != UInt8(ascii: "/"), method != "CONNECT",
            let separator = target.utf8.firstRange(of: "://".utf8)
        else { return self }
        let utf8 = target.utf8
        let scheme = utf8[utf8.startIndex..<separator.lowerBound]
        let isHTTP = scheme.elementsEqual("http".utf8) { HTTPSyntax.lowercased($0) == $1 }
        let isHTTPS = scheme.elementsEqual("https".utf8) { HTTPSyntax.lowercased($0) == $1 }
        guard isHTTP || isHTTPS else { throw .badRequest("absolute-form target with a scheme other than http or https") }
        let rest = utf8[separator.upperBound...]
        let authorityEnd =
            rest.firstIndex { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") } ?? rest.endIndex
        let authority = String(decoding: rest[rest.startIndex..<authorityEnd], as: UTF8.self)
        if authority.isEmpty { throw .badRequest("absolute-form target without a host") }
        if authority.utf8.contains(UInt8(ascii: "@")) { throw .badRequest("absolute-form target with userinfo") }
        var pathAndQuery = String(decoding: rest[authorityEnd...], as: UTF8.self)
        if let fragment = pathAndQuery.utf8.firstIndex(of: UInt8(ascii: "#")) {
            // A fragment is never part of a request-target (RFC 9110 §7.1): not sent on.
            pathAndQuery = String(pathAndQuery[..<fragment])
        }
        var result = self
        if pathAndQuery.isEmpty {
            // RFC 9112 §3.2.4: an OPTIONS for the whole server is `*`; anything else asks for `/`.
            result.target = method == "OPTIONS" ? "*" : "/"
        } else if pathAndQuery.utf8.first == UInt8(ascii: "?") {
            result.target = "/" + pathAndQuery
        } else {
            result.target = pathAndQuery
        }
        result.headers.set(name: "Host", value: authority)
        return result
    }
}
