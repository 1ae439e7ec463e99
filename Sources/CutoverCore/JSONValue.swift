/// A parsed JSON document that keeps what a config error needs: object key order and exact numbers.
///
/// Numbers stay as their literal text so that integers are never rounded through `Double` and
/// `true` can never be mistaken for `1` (as it can with `NSNumber`).
public enum JSONValue: Sendable, Equatable {
    /// `null`; config decoding reads it as "not set".
    case null
    /// `true` or `false`, never confused with a number.
    case bool(Bool)
    /// The number exactly as written, already checked against the JSON number grammar.
    case number(String)
    /// A string with its escapes resolved.
    case string(String)
    /// Elements in document order.
    case array([JSONValue])
    /// Members in document order; keys are unique (the parser refuses duplicates).
    case object([JSONMember])

    /// The value's kind with an article, for messages such as `expected a string, got a number`.
    public var kindDescription: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    /// Parses a whole UTF-8 JSON document (RFC 8259, no extensions: no comments, no trailing commas).
    public static func parse(_ bytes: [UInt8]) throws(JSONSyntaxError) -> JSONValue {
        var parser = JSONParser(bytes)
        return try parser.parseDocument()
    }

    /// The value of `key` when this is an object that has it.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.key == key }?.value
    }
}

/// One `"key": value` pair of a JSON object.
public struct JSONMember: Sendable, Equatable {
    /// The key, escapes resolved.
    public var key: String
    /// The value the key maps to.
    public var value: JSONValue

    public init(key: String, value: JSONValue) {
        self.key = key
        self.value = value
    }
}

/// Where and why a document is not JSON; `line` and `column` count from 1 (columns in characters).
public struct JSONSyntaxError: Error, Sendable, Equatable, CustomStringConvertible {
    /// 1-based line of the offending character.
    public var line: Int
    /// 1-based column, counted in characters (UTF-8 sequences count once).
    public var column: Int
    /// What was wrong, e.g. `unexpected "}", expected a value`.
    public var message: String

    public init(line: Int, column: Int, message: String) {
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String { "line \(line), column \(column): \(message)" }
}
