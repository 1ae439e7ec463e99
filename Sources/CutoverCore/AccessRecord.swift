/// One line of the access log: what happened to one request, however it ended.
///
/// Written as text (`access_log_format: "text"`, the default) or as one JSON object per line
/// (`"json"`, through `JSONCoding`'s snake_case keys: `time`, `client`, `method`, `target`,
/// `status`, `bytes`, `duration_ms`, `profile`, `endpoint`, `request_id`, `note`).
public struct AccessRecord: Codable, Sendable, Equatable {
    /// When it ended, UTC ISO 8601 with milliseconds.
    public var time: String
    /// The client's IP address.
    public var client: String
    /// Method and request target as received; `-` when no head was read.
    public var method: String
    public var target: String
    /// The status sent to the client, 0 when none was.
    public var status: Int
    /// Body bytes sent to the client.
    public var bytes: Int
    /// From the first byte of the head to the end of the answer.
    public var durationMs: UInt64
    /// The profile that routed it and the endpoint that served it; `-` for none.
    public var profile: String
    public var endpoint: String
    /// The `X-Request-Id` forwarded (the client's or the proxy's); absent when no head was read.
    public var requestId: String?
    /// How it ended when that is not plain (`upgraded`, `maintenance`, `aborted: …`, the proxy's answer).
    public var note: String?

    /// A record from its fields.
    public init(
        time: String, client: String, method: String, target: String, status: Int, bytes: Int, durationMs: UInt64,
        profile: String, endpoint: String, requestId: String?, note: String?
    ) {
        self.time = time
        self.client = client
        self.method = method
        self.target = target
        self.status = status
        self.bytes = bytes
        self.durationMs = durationMs
        self.profile = profile
        self.endpoint = endpoint
        self.requestId = requestId
        self.note = note
    }

    /// `TIME CLIENT "METHOD TARGET" STATUS PROFILE/ENDPOINT BYTESB MSms id=ID "NOTE"` (the id and
    /// the note only when present).
    public var textLine: String {
        var line = "\(time) \(client) \"\(method) \(target)\" \(status) \(profile)/\(endpoint) \(bytes)B \(durationMs)ms"
        if let requestId { line += " id=\(requestId)" }
        if let note { line += " \"\(note)\"" }
        return line
    }
}

/// How the access log writes its lines.
public enum AccessLogFormat: String, Sendable, Equatable, CaseIterable {
    /// One line of words per request (`AccessRecord.textLine`).
    case text
    /// One JSON object per line.
    case json
}
