import CLibPQ
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A libpq connection string taken apart into keywords, so the agent can point it at another database.
///
/// Accepts both forms libpq does (`host=… dbname=…` and `postgresql://…`); parsing is libpq's own.
public struct ConnectionString: Sendable, Equatable, CustomStringConvertible {
    /// Keyword/value pairs in libpq's order; only keywords that were given.
    public private(set) var parameters: [(key: String, value: String)]

    /// Parses `text` with `PQconninfoParse`.
    public init(_ text: String) throws(DatabaseError) {
        var errorMessage: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(text, &errorMessage) else {
            let message = errorMessage.map { String(cString: $0) } ?? "unparseable"
            if let errorMessage { PQfreemem(errorMessage) }
            throw .invalidConnectionString(message: message.trimmingWhitespace())
        }
        defer { PQconninfoFree(options) }
        var pairs: [(key: String, value: String)] = []
        var option = options
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val {
                pairs.append((String(cString: keyword), String(cString: value)))
            }
            option += 1
        }
        parameters = pairs
    }

    /// The value of `key`, if given.
    public func value(_ key: String) -> String? { parameters.first { $0.key == key }?.value }

    /// A copy with `key` set to `value` (replaced in place, or appended).
    public func setting(_ key: String, to value: String) -> ConnectionString {
        var copy = self
        if let index = copy.parameters.firstIndex(where: { $0.key == key }) {
            copy.parameters[index].value = value
        } else {
            copy.parameters.append((key, value))
        }
        return copy
    }

    /// The database acted upon; libpq's default is the user name.
    public var database: String { value("dbname") ?? user }

    /// The role the session logs in as (libpq defaults to the OS user).
    public var user: String { value("user") ?? getpwuid(geteuid()).map { String(cString: $0.pointee.pw_name) } ?? "unknown" }

    /// `host:port` for messages; libpq's defaults when absent.
    public var endpoint: String {
        let host = value("hostaddr") ?? value("host") ?? "local socket"
        return "\(host):\(value("port") ?? "5432")"
    }

    /// The connection string without the password, for logs and journals.
    public var description: String {
        parameters.filter { $0.key != "password" }.map { "\($0.key)=\(Self.quote($0.value))" }.joined(separator: " ")
    }

    /// Quotes a value the way libpq's keyword/value syntax expects.
    static func quote(_ value: String) -> String {
        if !value.isEmpty && !value.contains(where: { $0 == " " || $0 == "'" || $0 == "\\" }) { return value }
        return "'" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'") + "'"
    }

    public static func == (lhs: ConnectionString, rhs: ConnectionString) -> Bool {
        lhs.parameters.elementsEqual(rhs.parameters) { $0.key == $1.key && $0.value == $1.value }
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}
