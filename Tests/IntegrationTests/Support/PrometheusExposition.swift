import Foundation

/// A strict reader of the Prometheus text exposition format 0.0.4, enough to prove `/metrics` is
/// well formed: every sample is `name{labels} value`, every name belongs to a family declared once
/// by `# TYPE` (histograms own their `_bucket`, `_sum` and `_count` series) before its samples.
struct PrometheusExposition {
    struct Sample {
        let name: String
        let labels: [String: String]
        let value: Double
    }

    /// Declared families: name → type.
    private(set) var types: [String: String] = [:]
    private(set) var help: [String: String] = [:]
    private(set) var samples: [Sample] = []

    struct ParseError: Error, CustomStringConvertible {
        let line: Int
        let reason: String
        var description: String { "line \(line): \(reason)" }
    }

    init(_ text: String) throws {
        guard text.hasSuffix("\n") else { throw ParseError(line: 0, reason: "the exposition must end with a line feed") }
        var familiesWithSamples: Set<String> = []
        var currentFamily: String?
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().enumerated() {
            let number = index + 1
            if line.isEmpty { continue }
            if line.hasPrefix("#") {
                let words = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false).map(String.init)
                guard words.count >= 3 else { continue }  // a plain comment
                let name = words[2]
                guard Self.isMetricName(name) else { throw ParseError(line: number, reason: "bad metric name \(name)") }
                if words[1] == "TYPE" {
                    guard words.count == 4, ["counter", "gauge", "histogram", "summary", "untyped"].contains(words[3]) else {
                        throw ParseError(line: number, reason: "bad TYPE line: \(line)")
                    }
                    guard types[name] == nil else { throw ParseError(line: number, reason: "\(name) has two TYPE lines") }
                    guard !familiesWithSamples.contains(name) else { throw ParseError(line: number, reason: "TYPE of \(name) after its samples") }
                    types[name] = words[3]
                    currentFamily = name
                } else if words[1] == "HELP" {
                    guard help[name] == nil else { throw ParseError(line: number, reason: "\(name) has two HELP lines") }
                    help[name] = words.count == 4 ? words[3] : ""
                }
                continue
            }
            let sample = try Self.parseSample(String(line), line: number)
            guard let family = family(of: sample.name) else {
                throw ParseError(line: number, reason: "sample \(sample.name) has no # TYPE")
            }
            guard family == currentFamily else {
                throw ParseError(line: number, reason: "sample \(sample.name) is not grouped under its family \(family)")
            }
            familiesWithSamples.insert(family)
            samples.append(sample)
        }
    }

    /// The declared family a sample name belongs to.
    func family(of name: String) -> String? {
        if types[name] != nil { return name }
        for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
            let base = String(name.dropLast(suffix.count))
            if types[base] == "histogram" || (types[base] == "summary" && suffix != "_bucket") { return base }
        }
        return nil
    }

    /// The value of the one sample with this name whose labels include `labels`.
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        let matching = samples.filter { sample in
            sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value }
        }
        return matching.count == 1 ? matching[0].value : nil
    }

    static func isMetricName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, first == "_" || first == ":" || CharacterSet.letters.contains(first) && first.isASCII else { return false }
        return name.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "_" || $0 == ":") }
    }

    private static func parseSample(_ line: String, line number: Int) throws -> Sample {
        var rest = Substring(line)
        let nameEnd = rest.firstIndex { $0 == "{" || $0 == " " } ?? rest.endIndex
        let name = String(rest[..<nameEnd])
        guard isMetricName(name) else { throw ParseError(line: number, reason: "bad metric name in \(line)") }
        rest = rest[nameEnd...]
        var labels: [String: String] = [:]
        if rest.first == "{" {
            rest = rest.dropFirst()
            while rest.first != "}" {
                guard let equals = rest.firstIndex(of: "=") else { throw ParseError(line: number, reason: "label without = in \(line)") }
                let labelName = String(rest[..<equals])
                guard isMetricName(labelName), !labelName.contains(":") else { throw ParseError(line: number, reason: "bad label name \(labelName)") }
                rest = rest[rest.index(after: equals)...]
                guard rest.first == "\"" else { throw ParseError(line: number, reason: "unquoted label value in \(line)") }
                rest = rest.dropFirst()
                var value = ""
                while true {
                    guard let character = rest.first else { throw ParseError(line: number, reason: "unterminated label value in \(line)") }
                    rest = rest.dropFirst()
                    if character == "\"" { break }
                    if character == "\\" {
                        guard let escaped = rest.first else { throw ParseError(line: number, reason: "dangling escape in \(line)") }
                        rest = rest.dropFirst()
                        switch escaped {
                        case "\\": value.append("\\")
                        case "\"": value.append("\"")
                        case "n": value.append("\n")
                        default: throw ParseError(line: number, reason: "bad escape \\\(escaped) in \(line)")
                        }
                    } else {
                        value.append(character)
                    }
                }
                guard labels.updateValue(value, forKey: labelName) == nil else { throw ParseError(line: number, reason: "label \(labelName) twice in \(line)") }
                if rest.first == "," { rest = rest.dropFirst() } else if rest.first != "}" {
                    throw ParseError(line: number, reason: "expected , or } in \(line)")
                }
            }
            rest = rest.dropFirst()
        }
        let fields = rest.split(separator: " ", omittingEmptySubsequences: false)
        guard fields.count == 2 || fields.count == 3, fields[0].isEmpty else {
            throw ParseError(line: number, reason: "expected exactly one space before the value in \(line)")
        }
        let valueText = String(fields[1])
        let value: Double
        switch valueText {
        case "+Inf": value = .infinity
        case "-Inf": value = -.infinity
        case "NaN": value = .nan
        default:
            guard let parsed = Double(valueText) else { throw ParseError(line: number, reason: "bad value \(valueText) in \(line)") }
            value = parsed
        }
        if fields.count == 3, Int64(fields[2]) == nil { throw ParseError(line: number, reason: "bad timestamp in \(line)") }
        return Sample(name: name, labels: labels, value: value)
    }
}
