/// The header rewrites a proxy performs between client and upstream, as pure functions of heads.
public enum HTTPForwarding {
    /// The name this proxy gives itself in `Via` entries.
    public static let viaName = "cutover"

    /// The request to send upstream for a client's request.
    ///
    /// Strips hop-by-hop fields (RFC 9110 §7.6.1) and every field the client named in
    /// `Connection`, but never Transfer-Encoding, Content-Length or Host: chunked bodies are
    /// forwarded verbatim, and letting a client strip framing fields would be a smuggling vector.
    /// Appends the client to `X-Forwarded-For` and `Forwarded` when the connection comes from a
    /// trusted proxy, and replaces what the client sent in them otherwise (a client must not be able
    /// to name someone else as itself); sets `X-Forwarded-Proto`, appends `Via`. When `upgrading`, keeps `Upgrade` and sends `Connection: upgrade`; otherwise sends no
    /// Connection field (HTTP/1.1 keep-alive is the default upstream). An HTTP/1.0 client's request
    /// goes upstream as HTTP/1.0 so the upstream never answers it with chunked coding.
    /// - Parameters:
    ///   - clientAddress: the client's IP address without port, IPv6 without brackets.
    ///   - proto: the scheme the client used, `http`.
    ///   - trusted: the connection's peer is one of the listener's `trusted_proxies`.
    public static func upstreamRequest(
        _ head: HTTPRequestHead, clientAddress: String, proto: String, trusted: Bool = false, upgrading: Bool, requestID: RequestID? = nil
    ) -> HTTPRequestHead {
        var result = head
        result.version = upstreamVersion(of: head)
        requestEdits(head, origin: Origin(address: clientAddress, proto: proto, trusted: trusted), upgrading: upgrading, requestID: requestID) { edits in
            result.headers.apply(edits, filter: HopByHopFilter(head.headers, keepUpgrade: upgrading))
        }
        return result
    }

    /// Writes `upstreamRequest(head, …)` straight into `buffer`, without building the new head: the
    /// same edits, applied while serialising (the hot path: no copy of the field list per request).
    /// A `requestID` the proxy made replaces any `X-Request-Id` the client sent; the client's own
    /// passes unchanged.
    public static func writeUpstreamRequest(
        _ head: HTTPRequestHead, origin: Origin, upgrading: Bool, requestID: RequestID? = nil, into buffer: inout [UInt8]
    ) {
        head.writeRequestLine(version: upstreamVersion(of: head), into: &buffer)
        requestEdits(head, origin: origin, upgrading: upgrading, requestID: requestID) { edits in
            head.headers.write(applying: edits, filter: HopByHopFilter(head.headers, keepUpgrade: upgrading), into: &buffer)
        }
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
        responseEdits(head, requestVersion: requestVersion, keepClientAlive: keepClientAlive, switching: switching) { edits in
            result.headers.apply(edits, filter: HopByHopFilter(head.headers, keepUpgrade: switching))
        }
        return result
    }

    /// Writes `clientResponse(head, …)` straight into `buffer` (see `writeUpstreamRequest`).
    public static func writeClientResponse(
        _ head: HTTPResponseHead, requestVersion: HTTPVersion, keepClientAlive: Bool, upgrading: Bool, into buffer: inout [UInt8]
    ) {
        let switching = upgrading && head.status == 101
        head.writeStatusLine(version: .http1_1, into: &buffer)
        responseEdits(head, requestVersion: requestVersion, keepClientAlive: keepClientAlive, switching: switching) { edits in
            head.headers.write(applying: edits, filter: HopByHopFilter(head.headers, keepUpgrade: switching), into: &buffer)
        }
    }

    /// Who a request came from, with its forwarding elements built once per client connection.
    public struct Origin: Sendable {
        /// The client's IP address without port, IPv6 without brackets.
        public let address: String
        /// The scheme the client used, `http`.
        public let proto: String
        /// `for=ADDRESS;proto=PROTO`, the element appended to `Forwarded`.
        public let forwardedElement: String
        /// The peer is a trusted proxy: the `X-Forwarded-For` and `Forwarded` it sent are kept.
        public let trusted: Bool

        /// - Parameter trusted: the connection's peer is one of the listener's `trusted_proxies`.
        public init(address: String, proto: String, trusted: Bool = false) {
            self.address = address
            self.proto = proto
            self.trusted = trusted
            forwardedElement = "for=\(HTTPForwarding.forwardedNode(address));proto=\(proto)"
        }
    }

    /// An HTTP/1.0 client's request goes upstream as HTTP/1.0, so the upstream never chunks to it.
    private static func upstreamVersion(of head: HTTPRequestHead) -> HTTPVersion {
        head.version == .http1_0 ? .http1_0 : .http1_1
    }

    private static let via10 = "1.0 \(viaName)"
    private static let via11 = "1.1 \(viaName)"

    private static func viaElement(_ version: HTTPVersion) -> String {
        version == .http1_0 ? via10 : via11
    }

    /// What a proxy changes in a request's fields, in order (the one definition both the head-building
    /// and the writing forms follow), given to `body`.
    static func requestEdits<Result>(
        _ head: HTTPRequestHead, origin: Origin, upgrading: Bool, requestID: RequestID? = nil, _ body: (FieldEdits) -> Result
    ) -> Result {
        FieldEdits.with { edits in
            addRequestEdits(head, origin: origin, upgrading: upgrading, requestID: requestID, to: &edits)
            return body(edits)
        }
    }

    private static func addRequestEdits(_ head: HTTPRequestHead, origin: Origin, upgrading: Bool, requestID: RequestID?, to edits: inout FieldEdits) {
        // From anyone but a trusted proxy, forwarding fields are claims the client made about
        // itself: replaced, so the backend (and its rate limits, its audit log) sees the real peer.
        if origin.trusted {
            edits.append(.appendElement(name: "X-Forwarded-For", element: origin.address))
            edits.append(.replace(name: "X-Forwarded-Proto", value: origin.proto))
            edits.append(.appendElement(name: "Forwarded", element: origin.forwardedElement))
        } else {
            edits.append(.replace(name: "X-Forwarded-For", value: origin.address))
            edits.append(.replace(name: "X-Forwarded-Proto", value: origin.proto))
            edits.append(.replace(name: "Forwarded", value: origin.forwardedElement))
        }
        edits.append(.appendElement(name: "Via", element: viaElement(head.version)))
        if upgrading { edits.append(.add(name: "Connection", value: "upgrade")) }
        if let requestID, requestID.generated { edits.append(.requestID(requestID)) }
        if let length = normalisedContentLength(head.headers) { edits.append(.replace(name: "Content-Length", value: length)) }
    }

    /// What a proxy changes in a response's fields, in order, given to `body`.
    static func responseEdits<Result>(
        _ head: HTTPResponseHead, requestVersion: HTTPVersion, keepClientAlive: Bool, switching: Bool, _ body: (FieldEdits) -> Result
    ) -> Result {
        FieldEdits.with { edits in
            addResponseEdits(head, requestVersion: requestVersion, keepClientAlive: keepClientAlive, switching: switching, to: &edits)
            return body(edits)
        }
    }

    private static func addResponseEdits(_ head: HTTPResponseHead, requestVersion: HTTPVersion, keepClientAlive: Bool, switching: Bool, to edits: inout FieldEdits) {
        edits.append(.appendElement(name: "Via", element: viaElement(head.version)))
        if switching {
            edits.append(.add(name: "Connection", value: "upgrade"))
        } else if head.status < 200 {
            // An interim response (100 Continue) says nothing about the connection: the final one does.
        } else if !keepClientAlive {
            edits.append(.add(name: "Connection", value: "close"))
        } else if requestVersion == .http1_0 {
            edits.append(.add(name: "Connection", value: "keep-alive"))
        }
        if let length = normalisedContentLength(head.headers) { edits.append(.replace(name: "Content-Length", value: length)) }
    }

    /// The one `Content-Length` value to send instead of a list (`Content-Length: 3, 3`) or repeated
    /// fields, which the parser accepts only when every member is the same number (RFC 9110 §8.6);
    /// `nil` when the head has none or already a single plain one. Passing the list on would leave the
    /// next recipient to make the same judgement, and a lenient one might take only the first member.
    static func normalisedContentLength(_ headers: HTTPHeaders) -> String? {
        var count = 0
        var plain = true
        headers.forEachValue(named: "content-length") { value in
            count += 1
            if count > 1 || value.isEmpty || !value.allSatisfy({ $0 &- UInt8(ascii: "0") < 10 }) { plain = false }
            return plain
        }
        guard count > 0, !plain, let length = try? BodyFraming.contentLength(of: headers, errorStatus: 400) else { return nil }
        return String(length)
    }

    /// The `for=` node of a `Forwarded` element (RFC 7239 §6): IPv6 bracketed and quoted.
    public static func forwardedNode(_ address: String) -> String {
        guard address.utf8.contains(HTTPSyntax.colon) else { return address }
        let bare = address.hasPrefix("[") && address.hasSuffix("]") ? String(address.dropFirst().dropLast()) : address
        return "\"[\(bare)]\""
    }

    /// Fields that describe one connection and never pass through a proxy.
    static let hopByHopNames = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"]

    /// Fields a `Connection` list may not remove: they decide framing and routing.
    static let protectedNames = ["transfer-encoding", "content-length", "host"]
}

/// One change a proxy makes to a head's fields.
///
/// Names are literals (`StaticString`): matching them against every received field, once per edit,
/// and writing them then costs no reference counting, which a `String` name did on each use.
enum FieldEdit {
    /// Add `element` to the comma-separated list of the last field with this name, or add the field
    /// (RFC 9110 §5.3: both mean the same).
    case appendElement(name: StaticString, element: String)
    /// Drop every field with this name and add one at the end.
    case replace(name: StaticString, value: String)
    /// Add a field at the end.
    case add(name: StaticString, value: String)
    /// Replace `X-Request-Id` with this generated id (written as bytes, never built as a `String`).
    case requestID(RequestID)
}

/// The edits of one head, in order, in stack memory for the length of one write: a request gets at
/// most seven (three forwarding fields, Via, an upgrade's Connection, a request id, a normalised
/// Content-Length) and a response three. Deciding them allocates nothing, and reading one in the
/// per-field loops borrows it in place (an addressor): a copy would retain its strings every time.
struct FieldEdits: RandomAccessCollection {
    static let capacity = 8
    private let storage: UnsafeMutablePointer<FieldEdit>
    private(set) var endIndex = 0

    var startIndex: Int { 0 }

    private init(storage: UnsafeMutablePointer<FieldEdit>) {
        self.storage = storage
    }

    /// Edits that live for `body` only.
    static func with<Result>(_ body: (inout FieldEdits) -> Result) -> Result {
        withUnsafeTemporaryAllocation(of: FieldEdit.self, capacity: capacity) { buffer in
            var edits = FieldEdits(storage: buffer.baseAddress!)
            defer { edits.storage.deinitialize(count: edits.endIndex) }
            return body(&edits)
        }
    }

    /// - Precondition: fewer than `capacity` edits stored.
    mutating func append(_ edit: FieldEdit) {
        precondition(endIndex < Self.capacity, "more than \(Self.capacity) edits for one head")
        (storage + endIndex).initialize(to: edit)
        endIndex += 1
    }

    subscript(index: Int) -> FieldEdit {
        unsafeAddress {
            precondition(index >= 0 && index < endIndex, "no edit \(index) of \(endIndex)")
            return UnsafePointer(storage + index)
        }
    }
}

/// Which fields pass a proxy (RFC 9110 §7.6.1): not the hop-by-hop ones, nor those the sender
/// named in `Connection` (except framing and Host, which a client must not be able to strip).
///
/// Decided once per head, by field position: most heads carry no hop-by-hop field, and those that do
/// nearly always carry only `Connection: keep-alive`, which names a field that is hop-by-hop anyway.
struct HopByHopFilter {
    /// Positions of the fields that do not pass, as bits for the first 64 (no allocation for the
    /// `Connection: keep-alive` nearly every response carries), then as a list; empty for most heads.
    private var dropped: UInt64 = 0
    private var droppedBeyond: [Int] = []

    private mutating func drop(_ index: Int) {
        if index < 64 { dropped |= 1 << UInt64(index) } else { droppedBeyond.append(index) }
    }

    init(_ headers: HTTPHeaders, keepUpgrade: Bool) {
        var anyHopByHop = false
        headers.forEachField { _, name, _ in
            if HopByHopFilter.isHopByHop(name) { anyHopByHop = true }
        }
        // `Connection` is itself hop-by-hop: without any such field, nothing can be named in one.
        guard anyHopByHop else { return }
        // Names listed in `Connection` that are not hop-by-hop already (those are dropped anyway).
        var named: [[UInt8]] = []
        headers.forEachValue(named: "connection") { value in
            HTTPSyntax.forEachListElement(value) { element in
                if !HopByHopFilter.isHopByHop(element) { named.append(Array(element)) }
                return true
            }
            return true
        }
        headers.forEachField { index, name, _ in
            if HopByHopFilter.isHopByHop(name) {
                if !(keepUpgrade && HTTPSyntax.equalsIgnoringCase(name, lowercase: "upgrade")) { drop(index) }
                return
            }
            let listed = named.contains { token in token.withUnsafeBytes { HTTPSyntax.equalsIgnoringCase(name, $0) } }
            if listed && !HopByHopFilter.isProtected(name) { drop(index) }
        }
    }

    /// Whether the field at `index` is forwarded.
    func passes(_ index: Int) -> Bool {
        index < 64 ? dropped & (1 << UInt64(index)) == 0 : !droppedBeyond.contains(index)
    }

    /// One of `HTTPForwarding.hopByHopNames`; their lengths rule out nearly every other field at once.
    static func isHopByHop(_ name: UnsafeRawBufferPointer) -> Bool {
        switch name.count {
        case 2: return HTTPSyntax.equalsIgnoringCase(name, lowercase: "te")
        case 7: return HTTPSyntax.equalsIgnoringCase(name, lowercase: "trailer") || HTTPSyntax.equalsIgnoringCase(name, lowercase: "upgrade")
        case 10: return HTTPSyntax.equalsIgnoringCase(name, lowercase: "connection") || HTTPSyntax.equalsIgnoringCase(name, lowercase: "keep-alive")
        case 16: return HTTPSyntax.equalsIgnoringCase(name, lowercase: "proxy-connection")
        default: return false
        }
    }

    /// One of `HTTPForwarding.protectedNames`.
    static func isProtected(_ name: UnsafeRawBufferPointer) -> Bool {
        HTTPSyntax.equalsIgnoringCase(name, lowercase: "transfer-encoding") || HTTPSyntax.equalsIgnoringCase(name, lowercase: "content-length")
            || HTTPSyntax.equalsIgnoringCase(name, lowercase: "host")
    }
}

extension FieldEdit {
    /// The field name this edit is about.
    var name: StaticString {
        switch self {
        case .appendElement(let name, _), .replace(let name, _), .add(let name, _): return name
        case .requestID: return RequestID.headerField
        }
    }

    /// Whether `field` is this edit's name, ignoring case.
    func isNamed(_ field: UnsafeRawBufferPointer) -> Bool {
        let name = self.name
        guard name.utf8CodeUnitCount == field.count else { return false }
        return HTTPSyntax.equalsIgnoringCase(field, HTTPSyntax.bytes(name))
    }
}

extension HTTPHeaders {
    /// Keeps the fields that pass `filter`, then applies `edits` in order.
    mutating func apply(_ edits: FieldEdits, filter: HopByHopFilter) {
        self = keeping { filter.passes($0) }
        for edit in edits {
            switch edit {
            case .appendElement(let name, let element): appendListElement(name: name.description, element: element)
            case .replace(let name, let value): replace(name: name.description, value: value)
            case .add(let name, let value): add(name: name.description, value: value)
            case .requestID(let id): replace(name: RequestID.headerName, value: id.value)
            }
        }
    }

    /// Writes the fields that pass `filter` with `edits` applied, and the final CRLF: the same bytes
    /// as `apply` followed by `write(into:)`, without building the edited list. Unchanged fields are
    /// copied as the byte slices they were received as.
    func write(applying edits: FieldEdits, filter: HopByHopFilter, into buffer: inout [UInt8]) {
        // Which received field each edit touches: the last passing one of an appended name takes the
        // element (-1: none, add a field at the end); a replaced name drops them all.
        withUnsafeTemporaryAllocation(of: Int.self, capacity: edits.count) { lastOfAppended in
            lastOfAppended.initialize(repeating: -1)
            var replaced: [Int] = []
            var touched = false
            forEachField { index, name, _ in
                guard filter.passes(index) else { return }
                for e in edits.indices where edits[e].isNamed(name) {
                    switch edits[e] {
                    case .appendElement: lastOfAppended[e] = index
                    case .replace, .requestID: replaced.append(index)
                    case .add: break
                    }
                    touched = true
                }
            }
            writeFields(edits, filter: filter, lastOfAppended: lastOfAppended, replaced: replaced, touched: touched, into: &buffer)
        }
    }

    private func writeFields(
        _ edits: FieldEdits, filter: HopByHopFilter, lastOfAppended: UnsafeMutableBufferPointer<Int>, replaced: [Int], touched: Bool,
        into buffer: inout [UInt8]
    ) {
        write(into: &buffer) { index, _, _ in
            guard filter.passes(index) else { return .dropped }
            guard touched else { return .unchanged }
            if replaced.contains(index) { return .dropped }
            return lastOfAppended.contains(index) ? .rewritten : .unchanged
        } rewrite: { index, name, value, buffer in
            // The last field of an appended name, with the element added to its list.
            guard let e = lastOfAppended.firstIndex(of: index), case .appendElement(_, let element) = edits[e] else { return }
            Self.writeField(name, into: &buffer) { buffer in
                buffer.append(contentsOf: value)
                if !value.isEmpty { buffer.append(contentsOf: ", ".utf8) }
                buffer.append(contentsOf: element.utf8)
            }
        }
        // By index, reading each edit in place: `enumerated()` would copy (and retain) every one.
        for e in edits.indices {
            switch edits[e] {
            case .appendElement(let name, let element) where lastOfAppended[e] < 0: Self.writeField(name, element, into: &buffer)
            case .replace(let name, let value), .add(let name, let value): Self.writeField(name, value, into: &buffer)
            case .requestID(let id): Self.writeField(RequestID.headerField, into: &buffer) { id.write(into: &$0) }
            case .appendElement: break
            }
        }
        buffer.append(HTTPSyntax.cr)
        buffer.append(HTTPSyntax.lf)
    }
}
