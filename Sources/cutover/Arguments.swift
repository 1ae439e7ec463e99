import CutoverCore

/// A command line after the subcommand name: `--name value` options, `--flag` switches and positionals.
///
/// Each subcommand declares which option names take a value; anything else starting with `--` is a
/// switch. Unknown names are reported by `rejectUnknown`, so a typo never silently does nothing.
struct Arguments {
    private(set) var options: [(name: String, value: String)] = []
    private(set) var flags: Set<String> = []
    private(set) var positionals: [String] = []

    /// Splits `words`; `valued` lists option names (`"--config"`) that consume the next word.
    init(_ words: [String], valued: Set<String>) throws(UsageError) {
        var index = 0
        var onlyPositionals = false
        while index < words.count {
            let word = words[index]
            index += 1
            if onlyPositionals || !word.hasPrefix("--") || word == "-" {
                positionals.append(word)
                continue
            }
            if word == "--" {
                onlyPositionals = true
                continue
            }
            if let eq = word.firstIndex(of: "=") {
                let name = String(word[..<eq])
                guard valued.contains(name) else { throw UsageError("\(name) takes no value") }
                options.append((name, String(word[word.index(after: eq)...])))
            } else if valued.contains(word) {
                guard index < words.count else { throw UsageError("\(word) needs a value") }
                options.append((word, words[index]))
                index += 1
            } else {
                flags.insert(word)
            }
        }
    }

    /// The last value given for `name`.
    func value(_ name: String) -> String? { options.last { $0.name == name }?.value }

    /// Every value given for a repeatable option, in order.
    func values(_ name: String) -> [String] { options.filter { $0.name == name }.map(\.value) }

    func has(_ flag: String) -> Bool { flags.contains(flag) }

    /// A duration option (`--grace 2s`), or `fallback` when absent.
    func duration(_ name: String, default fallback: Duration) throws(UsageError) -> Duration {
        guard let text = value(name) else { return fallback }
        guard let d = DurationText.parse(text) else { throw UsageError("\(name): \"\(text)\" is not a duration (e.g. 500ms, 2s, 10m)") }
        return d
    }

    /// Refuses switches outside `known`, so `--jsn` is an error and not a silent no-op.
    func rejectUnknown(flags known: Set<String>) throws(UsageError) {
        if let bad = flags.subtracting(known).sorted().first {
            throw UsageError("unknown option \(bad)")
        }
    }
}

/// A mistake on the command line; printed with the command's usage line, exit status 2.
struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}
