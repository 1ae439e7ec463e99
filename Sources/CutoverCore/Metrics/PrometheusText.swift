/// A Prometheus text exposition (format 0.0.4) being written: each metric family gets its
/// `# HELP` and `# TYPE` lines once, then its samples, with label values escaped.
///
/// Pure string building; the admin HTTP listener serves `text`.
public struct PrometheusText: Sendable {
    /// The `Content-Type` of a 0.0.4 exposition.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// The metric types this exposition uses.
    public enum Kind: String, Sendable {
        case counter
        case gauge
        case histogram
    }

    /// The exposition so far.
    public private(set) var text = ""
    /// Families already declared: a second declaration would make the exposition invalid.
    private var declared: Set<String> = []

    public init() {}

    /// Declares a family; the samples that follow belong to it until the next declaration.
    ///
    /// - Important: declare each name once, and write its samples right after it.
    public mutating func family(_ name: String, _ kind: Kind, help: String) {
        precondition(declared.insert(name).inserted, "metric family \(name) declared twice")
        text += "# HELP \(name) \(Self.escapeHelp(help))\n# TYPE \(name) \(kind.rawValue)\n"
    }

    /// Writes one sample line: `name{label="value",...} value`.
    public mutating func sample(_ name: String, _ labels: [(String, String)] = [], _ value: Int) {
        text += "\(name)\(Self.labelSet(labels)) \(value)\n"
    }

    /// Writes one sample line with a floating-point value (`+Inf`, `-Inf` and `NaN` spelled as Prometheus does).
    public mutating func sample(_ name: String, _ labels: [(String, String)] = [], _ value: Double) {
        text += "\(name)\(Self.labelSet(labels)) \(Self.format(value))\n"
    }

    /// Writes the `_bucket`, `_sum` and `_count` samples of one histogram series.
    public mutating func histogram(_ name: String, _ labels: [(String, String)], _ reading: LatencyHistogram.Reading) {
        for bucket in reading.buckets {
            sample("\(name)_bucket", labels + [("le", Self.format(bucket.seconds))], bucket.cumulativeCount)
        }
        sample("\(name)_bucket", labels + [("le", "+Inf")], reading.count)
        sample("\(name)_sum", labels, reading.sumSeconds)
        sample("\(name)_count", labels, reading.count)
    }

    /// `{a="1",b="2"}`, or nothing for no labels.
    static func labelSet(_ labels: [(String, String)]) -> String {
        guard !labels.isEmpty else { return "" }
        return "{" + labels.map { "\($0.0)=\"\(escapeLabelValue($0.1))\"" }.joined(separator: ",") + "}"
    }

    /// Label values escape backslash, double quote and line feed.
    public static func escapeLabelValue(_ value: String) -> String {
        var out = ""
        for character in value {
            switch character {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(character)
            }
        }
        return out
    }

    /// Help text escapes backslash and line feed.
    static func escapeHelp(_ help: String) -> String {
        help.replacingAll("\\", with: "\\\\").replacingAll("\n", with: "\\n")
    }

    /// Go-style float text: `+Inf`, `-Inf`, `NaN`, integers without a fraction.
    public static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}

extension String {
    /// Every occurrence of `target` replaced (Core imports no Foundation).
    fileprivate func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        for character in self {
            if character == target { out += replacement } else { out.append(character) }
        }
        return out
    }
}
