/// One answer of an agent probe (`type: "agent"`): the line a backend's agent writes when the probe
/// connects, read as HAProxy's `agent-check` reads it, so a backend can drain itself before it stops.
///
/// The line is words separated by spaces, commas or tabs, any of them in any order: a health word
/// (`up`, `down`, also `fail` and `stopped` as in HAProxy), an admin word (`ready`, `drain`,
/// `maint`), a weight `NN%` (of the configured weight, 0 to 100), and after `#` a free text the
/// operator sees with it (`maint # disk replacement`). An empty line or an unknown word is a
/// failed probe: an agent that says nothing sane is not trusted with traffic.
public struct AgentReply: Sendable, Equatable {
    /// What the line says about health, if anything.
    public enum Health: String, Sendable, Equatable {
        case up
        case down
    }

    /// What the line says about new work, if anything.
    public enum Admin: String, Sendable, Equatable {
        /// Takes new work again (ends a `drain` or `maint`).
        case ready
        /// No new work; what is in flight finishes.
        case drain
        /// In maintenance: counted as down, with the reason shown.
        case maint
    }

    /// The longest line read; an agent's line is a few words.
    public static let maxBytes = 512

    public var health: Health?
    public var admin: Admin?
    /// The share of the configured weight, 0...100.
    public var weightPercent: Int?
    /// The text after `#`, trimmed; `nil` without one.
    public var message: String?

    /// A reply from its parts (tests).
    public init(health: Health? = nil, admin: Admin? = nil, weightPercent: Int? = nil, message: String? = nil) {
        self.health = health
        self.admin = admin
        self.weightPercent = weightPercent
        self.message = message
    }

    /// Reads one line (without its line end); an error names what was wrong in operator words.
    public static func parse(_ line: String) -> Result<AgentReply, AgentReplyError> {
        var reply = AgentReply()
        var words = Substring(line)
        if let hash = line.firstIndex(of: "#") {
            let text = line[line.index(after: hash)...].trimmingWhitespace
            reply.message = text.isEmpty ? nil : String(text)
            words = line[..<hash]
        }
        let tokens = words.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\t" || $0 == "\r" })
        guard !tokens.isEmpty else { return .failure(.empty) }
        for token in tokens {
            switch token.lowercased() {
            case "up": reply.health = .up
            case "down", "fail", "stopped": reply.health = .down
            case "ready": reply.admin = .ready
            case "drain": reply.admin = .drain
            case "maint": reply.admin = .maint
            default:
                guard token.hasSuffix("%"), let percent = Int(token.dropLast()), token.count > 1, token.first != "+", token.first != "-" else {
                    return .failure(.unknownWord(String(token)))
                }
                guard (0...100).contains(percent) else { return .failure(.weightOutOfRange(String(token))) }
                reply.weightPercent = percent
            }
        }
        return .success(reply)
    }

    /// The probe result the health counters see: `down`, `maint` (or both) fail, anything else
    /// the agent said passes (it answered sanely).
    public var outcome: ProbeOutcome {
        let text = "probe: agent says \(words)" + (message.map { " (\($0))" } ?? "")
        return health == .down || admin == .maint ? .failure(text) : .success(text)
    }

    /// The endpoint's share of its weight after this reply, given the share before (`nil`: full):
    /// `drain` makes it 0, `NN%` makes it NN, `ready` without a weight gives the full weight back,
    /// and a reply with none of those keeps what was.
    public func share(after previous: Int?) -> Int? {
        switch admin {
        case .drain?: return 0
        case .ready?, .maint?, nil:
            if let weightPercent { return weightPercent == 100 ? nil : weightPercent }
            return admin == .ready ? nil : previous
        }
    }

    /// The words understood, in a fixed order (`down maint 50%`).
    public var words: String {
        [health?.rawValue, admin?.rawValue, weightPercent.map { "\($0)%" }].compactMap { $0 }.joined(separator: " ")
    }
}

/// Why an agent's line was not understood.
public enum AgentReplyError: Error, Sendable, Equatable, CustomStringConvertible {
    case empty
    case unknownWord(String)
    case weightOutOfRange(String)

    public var description: String {
        switch self {
        case .empty: return "an empty line"
        case .unknownWord(let word): return "\"\(word)\", which is not up, down, ready, drain, maint or NN%"
        case .weightOutOfRange(let word): return "weight \(word), not 0% to 100%"
        }
    }

    /// The probe result for a line not understood.
    public var outcome: ProbeOutcome { .failure("probe: agent answered \(description)") }
}

extension Substring {
    /// Without leading and trailing spaces and tabs.
    fileprivate var trimmingWhitespace: Substring {
        var text = self
        while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
        while let last = text.last, last == " " || last == "\t" || last == "\r" { text.removeLast() }
        return text
    }
}
