import CutoverCore

/// One answer of the agent's socket in both forms: the `OK …` text line, and the proxy's JSON
/// envelope (`AdminAnswer`) for `--json`.
struct AgentReply {
    let text: String
    let json: String

    init<Payload: Codable & Sendable>(text: String, message: String? = nil, data: Payload) {
        self.text = text
        self.json = JSONCoding.line(AdminAnswer(message: message, data: data))
    }

    /// `db readonly on|off`: the report; the message is its first line.
    init(fence report: FenceReport) {
        self.init(text: "OK " + report.json, message: report.text.split(separator: "\n").first.map(String.init), data: report)
    }

    /// `flag on|off|status`.
    init(flag result: FlagResult) {
        self.init(text: "OK " + result.json, message: result.text, data: result)
    }
}

/// `db readonly status NAME --json` on the agent: what the database says, and the lease the agent holds on it.
public struct DatabaseStatusAnswer: Codable, Sendable, Equatable {
    /// The database's own view (its fields sit flat in the answer).
    public var status: DatabaseStatus
    /// Time left on the agent's lease, when it holds one (key `lease_ms`).
    public var leaseMs: Int64?

    public init(status: DatabaseStatus, leaseMs: Int64?) {
        self.status = status
        self.leaseMs = leaseMs
    }

    private enum CodingKeys: String, CodingKey {
        case leaseMs
    }

    /// Decodes the JSON form (see the type).
    public init(from decoder: any Decoder) throws {
        status = try DatabaseStatus(from: decoder)
        leaseMs = try decoder.container(keyedBy: CodingKeys.self).decodeIfPresent(Int64.self, forKey: .leaseMs)
    }

    /// Encodes the JSON form (see the type).
    public func encode(to encoder: any Encoder) throws {
        try status.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(leaseMs, forKey: .leaseMs)
    }
}

/// `lease show --json`.
public struct LeasesAnswer: Codable, Sendable, Equatable {
    /// By name.
    public var leases: [LeaseStatus]

    public init(leases: [LeaseStatus]) { self.leases = leases }
}

/// One lease the agent holds, and the time left on it.
public struct LeaseStatus: Codable, Sendable, Equatable {
    /// The configured database name, or the dbname of a connection string.
    public var name: String
    /// Milliseconds until the agent gives the database back (key `left_ms`; 0 when due).
    public var leftMs: Int64

    public init(name: String, leftMs: Int64) {
        self.name = name
        self.leftMs = leftMs
    }
}

/// One entry of the lease file (`JOURNAL.leases`, mode 0600), as written since the first agents:
/// `{"control_database":"postgres","duration_ms":600000,"expires_at":1764625000.5,"name":"primary","source":"primary"}`.
struct LeaseRecord: Codable, Sendable, Equatable {
    var name: String
    /// The database as the command named it (a configured name or a connection string).
    var source: String
    var controlDatabase: String
    /// Wall-clock expiry, seconds since 1970 (the monotonic clock does not survive a restart).
    var expiresAt: Double
    var durationMs: Int64
}
