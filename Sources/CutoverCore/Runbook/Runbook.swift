/// A runbook after parsing, parameter resolution and validation: nothing in it is unknown or unset.
///
/// Built only by `Runbook.load`, which refuses the whole file at the first problem, so that nothing
/// runs from a runbook with a typo in step 7.
public struct Runbook: Sendable, Equatable {
    /// The runbook file as named by the operator (for messages and the journal).
    public var file: String
    /// `name`.
    public var name: String
    /// `description`.
    public var description: String
    /// Every declared parameter with its resolved value, in declaration order.
    public var params: [NamedValue]
    /// The resolved steps, in order.
    public var steps: [RunbookStep]

    /// Top-level keys, in documented order.
    public static let rootKeys = ["name", "description", "params", "steps"]
    /// Keys of one `params` entry.
    public static let paramKeys = ["description", "default"]
    /// Keys every step may have besides its kind's own.
    public static let commonStepKeys = ["kind", "title", "when", "timeout", "point_of_no_return", "data_loss"]

    /// Parses `bytes` (the file `file`, whose folder is `baseDirectory`) with the `--set` values `settings`.
    ///
    /// `settings` are `NAME=VALUE` words as typed; an unknown name or a required parameter left unset is refused.
    public static func load(
        _ bytes: [UInt8], file: String, baseDirectory: String, settings: [String]
    ) throws(RunbookError) -> Runbook {
        let document: JSONValue
        do {
            document = try JSONValue.parse(bytes)
        } catch {
            throw RunbookError(file: file, key: "", reason: "not valid JSON: \(error)")
        }
        guard case .object = document else {
            throw RunbookError(file: file, key: "", reason: "expected a JSON object at the top level, got \(document.kindDescription)")
        }
        let root = try RunbookObject(document, path: "", file: file, keys: rootKeys)
        let name = try root.required("name", root.string)
        let description = try root.string("description") ?? ""
        let params = try resolveParams(root, file: file, settings: try parseSettings(settings, file: file))
        let values = Dictionary(params.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        guard let stepsValue = root.value("steps") else { throw root.error("steps", "required key is missing") }
        guard case .array(let elements) = stepsValue else { throw root.error("steps", "expected an array, got \(stepsValue.kindDescription)") }
        guard !elements.isEmpty else { throw root.error("steps", "a runbook needs at least one step") }
        var steps: [RunbookStep] = []
        for (i, element) in elements.enumerated() {
            let path = "steps[\(i)]"
            let substituted = try Substitution.apply(element, values: values, path: path, file: file)
            steps.append(try RunbookStepDecoder(file: file, baseDirectory: baseDirectory).decode(substituted, index: i, path: path))
        }
        return Runbook(file: file, name: name, description: description, params: params, steps: steps)
    }

    /// `NAME=VALUE` words, in order; a later one overrides an earlier one.
    static func parseSettings(_ words: [String], file: String) throws(RunbookError) -> [(String, String)] {
        var result: [(String, String)] = []
        for word in words {
            guard let eq = word.firstIndex(of: "="), eq != word.startIndex else {
                throw RunbookError(file: file, key: "--set \(word)", reason: "expected NAME=VALUE")
            }
            result.append((String(word[..<eq]), String(word[word.index(after: eq)...])))
        }
        return result
    }

    /// Declared params with `--set` values applied and defaults substituted (defaults may use other params).
    private static func resolveParams(_ root: RunbookObject, file: String, settings: [(String, String)]) throws(RunbookError) -> [NamedValue] {
        var declared: [(name: String, defaultValue: JSONValue?)] = []
        if let paramsValue = root.value("params") {
            guard case .object(let members) = paramsValue else {
                throw root.error("params", "expected an object, got \(paramsValue.kindDescription)")
            }
            for member in members {
                let path = "params.\(member.key)"
                guard Substitution.isName(member.key) else {
                    throw RunbookError(file: file, key: path, reason: "a parameter name is letters, digits and _ (it is written ${\(member.key)})")
                }
                let param = try RunbookObject(member.value, path: path, file: file, keys: paramKeys)
                _ = try param.string("description")
                if let value = param.value("default"), case .string = value {
                    declared.append((member.key, value))
                } else if let value = param.value("default") {
                    throw param.error("default", "expected a string, got \(value.kindDescription)")
                } else {
                    declared.append((member.key, nil))
                }
            }
        }
        var given: [String: String] = [:]
        for (name, value) in settings {
            guard declared.contains(where: { $0.name == name }) else {
                let known = declared.map(\.name)
                throw RunbookError(
                    file: file, key: "--set \(name)",
                    reason: "the runbook declares no parameter \"\(name)\"" + (known.isEmpty ? "" : "; it declares: \(known.joined(separator: ", "))"))
            }
            given[name] = value
        }
        // Resolve in dependency order: a default may name params declared after it; a cycle is an error.
        var resolved: [String: String] = given
        var resolving: [String] = []
        func resolve(_ name: String) throws(RunbookError) -> String {
            if let value = resolved[name] { return value }
            guard let entry = declared.first(where: { $0.name == name }) else {
                preconditionFailure("resolve is only called for declared names")
            }
            let path = "params.\(name).default"
            guard let defaultValue = entry.defaultValue, case .string(let text) = defaultValue else {
                throw RunbookError(file: file, key: "params.\(name)", reason: "required parameter is not set; give it with --set \(name)=VALUE")
            }
            guard !resolving.contains(name) else {
                throw RunbookError(file: file, key: path, reason: "defaults refer to each other in a cycle: \((resolving + [name]).joined(separator: " → "))")
            }
            resolving.append(name)
            var value = ""
            for piece in try Substitution.pieces(text, path: path, file: file) {
                switch piece {
                case .literal(let literal): value += literal
                case .reference(let other):
                    guard declared.contains(where: { $0.name == other }) else {
                        throw RunbookError(file: file, key: path, reason: "unknown parameter ${\(other)}")
                    }
                    value += try resolve(other)
                }
            }
            resolving.removeLast()
            resolved[name] = value
            return value
        }
        var params: [NamedValue] = []
        for entry in declared { params.append(NamedValue(name: entry.name, value: try resolve(entry.name))) }
        return params
    }
}

/// `${name}` substitution in string values; `$${` is a literal `${`.
enum Substitution {
    enum Piece: Equatable {
        case literal(String)
        case reference(String)
    }

    static func isName(_ text: String) -> Bool {
        !text.isEmpty && text.allSatisfy { $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) }
    }

    /// Splits `text` into literals and `${name}` references.
    static func pieces(_ text: String, path: String, file: String) throws(RunbookError) -> [Piece] {
        var result: [Piece] = []
        var literal = ""
        var rest = Substring(text)
        while let dollar = rest.firstIndex(of: "$") {
            literal += rest[..<dollar]
            let after = rest[rest.index(after: dollar)...]
            if after.hasPrefix("${") {
                literal += "${"
                rest = after.dropFirst(2)
            } else if after.hasPrefix("{") {
                guard let close = after.firstIndex(of: "}") else {
                    throw RunbookError(file: file, key: path, reason: "unterminated ${ in \"\(text)\"")
                }
                let name = String(after[after.index(after: after.startIndex)..<close])
                guard isName(name) else { throw RunbookError(file: file, key: path, reason: "\"${\(name)}\" is not a parameter reference") }
                if !literal.isEmpty { result.append(.literal(literal)) }
                literal = ""
                result.append(.reference(name))
                rest = after[after.index(after: close)...]
            } else {
                literal += "$"
                rest = after
            }
        }
        literal += rest
        if !literal.isEmpty { result.append(.literal(literal)) }
        return result
    }

    /// `value` with every string substituted; the key path of an unknown reference is exact.
    static func apply(_ value: JSONValue, values: [String: String], path: String, file: String) throws(RunbookError) -> JSONValue {
        switch value {
        case .null, .bool, .number:
            return value
        case .string(let text):
            var out = ""
            for piece in try pieces(text, path: path, file: file) {
                switch piece {
                case .literal(let literal): out += literal
                case .reference(let name):
                    guard let replacement = values[name] else {
                        throw RunbookError(file: file, key: path, reason: "unknown parameter ${\(name)}; declare it under params")
                    }
                    out += replacement
                }
            }
            return .string(out)
        case .array(let elements):
            var out: [JSONValue] = []
            for (i, element) in elements.enumerated() { out.append(try apply(element, values: values, path: "\(path)[\(i)]", file: file)) }
            return .array(out)
        case .object(let members):
            var out: [JSONMember] = []
            for member in members {
                out.append(JSONMember(key: member.key, value: try apply(member.value, values: values, path: "\(path).\(member.key)", file: file)))
            }
            return .object(out)
        }
    }
}
