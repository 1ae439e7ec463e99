import Foundation

/// What one database step did, for the journal (details: snake_case keys) and the progress line.
public struct DatabaseStepReport: Codable, Sendable, Equatable {
    /// One line for a person: `copied app → app_v2 by template in 412 ms`.
    public var summary: String
    /// Facts for scripts and the journal, keys in snake_case: `["method": "template", "terminated_sessions": "2"]`.
    public var details: [String: String]

    /// A report of `summary` and `details`.
    public init(summary: String, details: [String: String] = [:]) {
        self.summary = summary
        self.details = details
    }

    /// One JSON object, keys sorted: `{"details":{…},"summary":"…"}`.
    public var json: String {
        // Its own encoder: the keys are fixed lowercase words and the details' keys are already snake_case.
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(self) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    /// The summary, then one indented `key: value` line per detail in key order.
    public var text: String {
        ([summary] + details.keys.sorted().map { "  \($0): \(details[$0] ?? "")" }).joined(separator: "\n")
    }
}
