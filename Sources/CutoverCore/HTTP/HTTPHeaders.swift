/// The header fields of a head in the order received: duplicates kept, names in their original
/// case, looked up case-insensitively.
public struct HTTPHeaders: Sendable, Equatable, Sequence, ExpressibleByArrayLiteral {
    /// One field line as received, e.g. `(name: "Host", value: "example.com")`.
    public typealias Field = (name: String, value: String)

    private var fields: [Field]

    /// No fields.
    public init() {
        fields = []
    }

    /// These fields, in this order.
    public init(_ fields: [Field]) {
        self.fields = fields
    }

    /// Fields written as a list of `(name, value)` pairs.
    public init(arrayLiteral elements: (String, String)...) {
        fields = elements.map { (name: $0.0, value: $0.1) }
    }

    /// Number of field lines, duplicates included.
    public var count: Int { fields.count }

    /// Whether there are no fields.
    public var isEmpty: Bool { fields.isEmpty }

    /// The fields in order.
    public func makeIterator() -> IndexingIterator<[Field]> {
        fields.makeIterator()
    }

    /// The value of the first field with this name, ignoring case; `nil` when absent.
    public subscript(name: String) -> String? {
        let lowercase = name
        for field in fields where HTTPSyntax.equalsIgnoringCase(field.name, lowercase: lowercase) {
            return field.value
        }
        return nil
    }

    /// The values of every field with this name, ignoring case, in order.
    public func values(named name: String) -> [String] {
        let lowercase = name
        return fields.compactMap { HTTPSyntax.equalsIgnoringCase($0.name, lowercase: lowercase) ? $0.value : nil }
    }

    /// Whether at least one field has this name, ignoring case.
    public func contains(_ name: String) -> Bool {
        let lowercase = name
        return fields.contains { HTTPSyntax.equalsIgnoringCase($0.name, lowercase: lowercase) }
    }

    /// Appends a field after the existing ones.
    public mutating func add(name: String, value: String) {
        fields.append((name: name, value: value))
    }

    /// Removes every field with this name, ignoring case.
    public mutating func remove(named name: String) {
        let lowercase = name
        fields.removeAll { HTTPSyntax.equalsIgnoringCase($0.name, lowercase: lowercase) }
    }

    /// Replaces every field with this name by a single field appended at the end.
    public mutating func replace(name: String, value: String) {
        remove(named: name)
        add(name: name, value: value)
    }

    /// Gives the first field with this name `value` where it stands and removes any later ones, or
    /// appends the field when there is none.
    public mutating func set(name: String, value: String) {
        let lowercase = name
        guard let first = fields.firstIndex(where: { HTTPSyntax.equalsIgnoringCase($0.name, lowercase: lowercase) }) else {
            add(name: name, value: value)
            return
        }
        fields[first].value = value
        var index = fields.count - 1
        while index > first {
            if HTTPSyntax.equalsIgnoringCase(fields[index].name, lowercase: lowercase) { fields.remove(at: index) }
            index -= 1
        }
    }

    /// Adds `element` to the comma-separated list in the last field with this name, or appends a
    /// new field when there is none (RFC 9110 §5.3: both mean the same).
    public mutating func appendListElement(name: String, element: String) {
        let lowercase = name
        if let index = fields.lastIndex(where: { HTTPSyntax.equalsIgnoringCase($0.name, lowercase: lowercase) }) {
            let existing = fields[index].value
            fields[index].value = existing.isEmpty ? element : existing + ", " + element
        } else {
            add(name: name, value: element)
        }
    }

    /// Lower-cased tokens listed in every `Connection` field, e.g. `["close"]` or `["upgrade"]`.
    public var connectionTokens: Set<String> {
        var tokens = Set<String>()
        for field in fields where HTTPSyntax.equalsIgnoringCase(field.name, lowercase: "connection") {
            HTTPSyntax.forEachListElement(field.value) { element in
                tokens.insert(String(Substring(element)).lowercased())
                return true
            }
        }
        return tokens
    }

    /// Whether any field with this name lists `token` (case-insensitive) in its comma-separated
    /// value; allocation-free, for `Connection: close` checks on every request.
    public func containsToken(_ token: String, inFieldsNamed name: String) -> Bool {
        let lowercaseName = name
        let lowercaseToken = token
        var found = false
        for field in fields where HTTPSyntax.equalsIgnoringCase(field.name, lowercase: lowercaseName) {
            HTTPSyntax.forEachListElement(field.value) { element in
                found = HTTPSyntax.element(element, equals: lowercaseToken)
                return !found
            }
            if found { return true }
        }
        return false
    }

    /// Same fields in the same order with the same names and values (names compared exactly).
    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        lhs.fields.elementsEqual(rhs.fields) { $0.name == $1.name && $0.value == $1.value }
    }

    /// Appends `Name: value CRLF` for every field.
    func write(into buffer: inout [UInt8]) {
        for field in fields { Self.writeField(field.name, field.value, into: &buffer) }
    }

    /// Appends `Name: value CRLF`.
    static func writeField(_ name: String, _ value: String, into buffer: inout [UInt8]) {
        buffer.append(contentsOf: name.utf8)
        buffer.append(HTTPSyntax.colon)
        buffer.append(HTTPSyntax.space)
        buffer.append(contentsOf: value.utf8)
        buffer.append(HTTPSyntax.cr)
        buffer.append(HTTPSyntax.lf)
    }

    /// Bytes `write(into:)` will append, to reserve capacity once.
    var serializedByteCount: Int {
        fields.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 }
    }
}
