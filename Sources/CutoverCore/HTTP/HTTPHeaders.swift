/// The header fields of a head in the order received: duplicates kept, names in their original
/// case, looked up case-insensitively.
///
/// Stored as one byte buffer with the name and value ranges of each field, so a parsed head costs
/// one copy of its field bytes instead of two `String`s per field, lookups compare bytes, and a head
/// is forwarded by copying its unchanged fields as slices. `String`s are built only when asked for.
public struct HTTPHeaders: Sendable, Equatable, Sequence, ExpressibleByArrayLiteral {
    /// One field line as received, e.g. `(name: "Host", value: "example.com")`.
    public typealias Field = (name: String, value: String)

    /// Where one field's name and value lie in `storage`.
    struct Span: Sendable {
        var nameStart: Int32
        var nameEnd: Int32
        var valueStart: Int32
        var valueEnd: Int32
        /// The line lies in `storage` exactly as written out, `Name: value CRLF`, so a run of such
        /// lines can be copied as one slice. Only received lines qualify, and only with one space
        /// after the colon and nothing after the value: any other whitespace is normalised.
        var verbatim = false
    }

    /// Field bytes: the parsed head's field lines, then whatever was added or edited since.
    private var storage: [UInt8]
    private var spans: [Span]

    /// No fields.
    public init() {
        storage = []
        spans = []
    }

    /// These fields, in this order.
    public init(_ fields: [Field]) {
        self.init()
        for field in fields { add(name: field.name, value: field.value) }
    }

    /// Fields written as a list of `(name, value)` pairs.
    public init(arrayLiteral elements: (String, String)...) {
        self.init()
        for (name, value) in elements { add(name: name, value: value) }
    }

    /// Fields that already lie in `storage` (the parser's one copy of a head's field lines).
    init(storage: [UInt8], spans: [Span]) {
        self.storage = storage
        self.spans = spans
    }

    /// Number of field lines, duplicates included.
    public var count: Int { spans.count }

    /// Whether there are no fields.
    public var isEmpty: Bool { spans.isEmpty }

    /// The fields in order (builds their `String`s: not for the hot path).
    public func makeIterator() -> IndexingIterator<[Field]> {
        storage.withUnsafeBytes { raw in
            spans.map { (name: Self.text(raw, $0.nameStart, $0.nameEnd), value: Self.text(raw, $0.valueStart, $0.valueEnd)) }
        }.makeIterator()
    }

    /// The value of the first field with this name, ignoring case; `nil` when absent.
    public subscript(name: String) -> String? {
        var found: String?
        forEachValue(named: name) { value in
            found = String(decoding: value, as: UTF8.self)
            return false
        }
        return found
    }

    /// The values of every field with this name, ignoring case, in order.
    public func values(named name: String) -> [String] {
        var found: [String] = []
        forEachValue(named: name) { value in
            found.append(String(decoding: value, as: UTF8.self))
            return true
        }
        return found
    }

    /// Whether at least one field has this name, ignoring case.
    public func contains(_ name: String) -> Bool {
        firstIndex(named: name) != nil
    }

    /// Appends a field after the existing ones.
    public mutating func add(name: String, value: String) {
        let nameStart = Int32(storage.count)
        Self.append(name, to: &storage)
        let valueStart = Int32(storage.count)
        Self.append(value, to: &storage)
        spans.append(Span(nameStart: nameStart, nameEnd: valueStart, valueStart: valueStart, valueEnd: Int32(storage.count)))
    }

    /// Removes every field with this name, ignoring case.
    public mutating func remove(named name: String) {
        let doomed = indices(named: name)
        guard !doomed.isEmpty else { return }
        for index in doomed.reversed() { spans.remove(at: index) }
    }

    /// Replaces every field with this name by a single field appended at the end.
    public mutating func replace(name: String, value: String) {
        remove(named: name)
        add(name: name, value: value)
    }

    /// Gives the first field with this name `value` where it stands and removes any later ones, or
    /// appends the field when there is none.
    public mutating func set(name: String, value: String) {
        let matching = indices(named: name)
        guard let first = matching.first else {
            add(name: name, value: value)
            return
        }
        setValue(at: first, value)
        for index in matching.dropFirst().reversed() { spans.remove(at: index) }
    }

    /// Adds `element` to the comma-separated list in the last field with this name, or appends a
    /// new field when there is none (RFC 9110 §5.3: both mean the same).
    public mutating func appendListElement(name: String, element: String) {
        guard let index = indices(named: name).last else {
            add(name: name, value: element)
            return
        }
        let existing = value(at: index)
        setValue(at: index, existing.isEmpty ? element : existing + ", " + element)
    }

    /// Lower-cased tokens listed in every `Connection` field, e.g. `["close"]` or `["upgrade"]`.
    public var connectionTokens: Set<String> {
        var tokens = Set<String>()
        forEachValue(named: "connection") { value in
            HTTPSyntax.forEachListElement(value) { element in
                tokens.insert(String(decoding: element, as: UTF8.self).lowercased())
                return true
            }
            return true
        }
        return tokens
    }

    /// Whether any field with this name lists `token` (case-insensitive) in its comma-separated
    /// value; allocation-free, for `Connection: close` checks on every request.
    public func containsToken(_ token: String, inFieldsNamed name: String) -> Bool {
        var token = token
        return token.withUTF8 { tokenBytes in
            var found = false
            forEachValue(named: name) { value in
                HTTPSyntax.forEachListElement(value) { element in
                    found = HTTPSyntax.equalsIgnoringCase(element, UnsafeRawBufferPointer(tokenBytes))
                    return !found
                }
                return !found
            }
            return found
        }
    }

    /// Same fields in the same order with the same names and values (names compared exactly).
    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        guard lhs.spans.count == rhs.spans.count else { return false }
        return lhs.storage.withUnsafeBytes { left in
            rhs.storage.withUnsafeBytes { right in
                zip(lhs.spans, rhs.spans).allSatisfy { a, b in
                    Self.slice(left, a.nameStart, a.nameEnd).elementsEqual(Self.slice(right, b.nameStart, b.nameEnd))
                        && Self.slice(left, a.valueStart, a.valueEnd).elementsEqual(Self.slice(right, b.valueStart, b.valueEnd))
                }
            }
        }
    }

    // MARK: - Bytes (the hot path)

    /// Calls `body` with the value bytes of every field with this name (ignoring case), in order,
    /// until it returns false.
    func forEachValue(named name: String, _ body: (UnsafeRawBufferPointer) -> Bool) {
        var name = name
        name.withUTF8 { nameBytes in
            storage.withUnsafeBytes { raw in
                for span in spans
                where HTTPSyntax.equalsIgnoringCase(Self.slice(raw, span.nameStart, span.nameEnd), UnsafeRawBufferPointer(nameBytes)) {
                    if !body(Self.slice(raw, span.valueStart, span.valueEnd)) { return }
                }
            }
        }
    }

    /// Calls `body` with the index, name and value bytes of every field, in order.
    func forEachField(_ body: (Int, UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Void) {
        storage.withUnsafeBytes { raw in
            for (index, span) in spans.enumerated() {
                body(index, Self.slice(raw, span.nameStart, span.nameEnd), Self.slice(raw, span.valueStart, span.valueEnd))
            }
        }
    }

    /// The fields at these positions only, in order.
    func keeping(_ keep: (Int) -> Bool) -> HTTPHeaders {
        var copy = self
        copy.spans = spans.enumerated().compactMap { keep($0.offset) ? $0.element : nil }
        return copy
    }

    private func firstIndex(named name: String) -> Int? {
        indices(named: name).first
    }

    private func indices(named name: String) -> [Int] {
        var result: [Int] = []
        var name = name
        name.withUTF8 { nameBytes in
            storage.withUnsafeBytes { raw in
                for (index, span) in spans.enumerated()
                where HTTPSyntax.equalsIgnoringCase(Self.slice(raw, span.nameStart, span.nameEnd), UnsafeRawBufferPointer(nameBytes)) {
                    result.append(index)
                }
            }
        }
        return result
    }

    private func value(at index: Int) -> String {
        storage.withUnsafeBytes { Self.text($0, spans[index].valueStart, spans[index].valueEnd) }
    }

    private mutating func setValue(at index: Int, _ value: String) {
        let start = Int32(storage.count)
        Self.append(value, to: &storage)
        spans[index].valueStart = start
        spans[index].valueEnd = Int32(storage.count)
        spans[index].verbatim = false
    }

    private static func append(_ text: String, to buffer: inout [UInt8]) {
        var text = text
        text.withUTF8 { buffer.append(contentsOf: $0) }
    }

    static func slice(_ raw: UnsafeRawBufferPointer, _ start: Int32, _ end: Int32) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: raw[Int(start)..<Int(end)])
    }

    private static func text(_ raw: UnsafeRawBufferPointer, _ start: Int32, _ end: Int32) -> String {
        String(decoding: slice(raw, start, end), as: UTF8.self)
    }

    // MARK: - Writing

    /// Appends `Name: value CRLF` for every field.
    func write(into buffer: inout [UInt8]) {
        write(into: &buffer, fate: { _, _, _ in .unchanged }, rewrite: { _, _, _, _ in })
    }

    /// What becomes of one field when a head is written out.
    enum FieldFate {
        /// Written as it is.
        case unchanged
        /// Not written.
        case dropped
        /// Written by the caller's `rewrite`, in its place.
        case rewritten
    }

    /// Appends every field as `fate` decides, in order: unchanged ones as `Name: value CRLF`,
    /// rewritten ones by `rewrite`. Unchanged received lines that follow each other are copied as
    /// one slice of `storage` (most heads are a few such runs), not field by field.
    func write(
        into buffer: inout [UInt8], fate: (Int, UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> FieldFate,
        rewrite: (Int, UnsafeRawBufferPointer, UnsafeRawBufferPointer, inout [UInt8]) -> Void
    ) {
        storage.withUnsafeBytes { raw in
            // The verbatim lines waiting to be copied: raw[runStart..<runEnd].
            var runStart = 0
            var runEnd = 0
            func flush(_ buffer: inout [UInt8]) {
                if runEnd > runStart { buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[runStart..<runEnd])) }
                runStart = 0
                runEnd = 0
            }
            for (index, span) in spans.enumerated() {
                let name = Self.slice(raw, span.nameStart, span.nameEnd)
                let value = Self.slice(raw, span.valueStart, span.valueEnd)
                switch fate(index, name, value) {
                case .unchanged where span.verbatim:
                    let lineStart = Int(span.nameStart)
                    if lineStart != runEnd || runEnd == runStart {
                        flush(&buffer)
                        runStart = lineStart
                    }
                    runEnd = Int(span.valueEnd) + 2
                case .unchanged:
                    flush(&buffer)
                    Self.writeField(name, value, into: &buffer)
                case .dropped:
                    flush(&buffer)
                case .rewritten:
                    flush(&buffer)
                    rewrite(index, name, value, &buffer)
                }
            }
            flush(&buffer)
        }
    }

    /// Appends `Name: value CRLF`.
    static func writeField(_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, into buffer: inout [UInt8]) {
        writeField(name, into: &buffer) { $0.append(contentsOf: value) }
    }

    /// Appends `Name: `, the value `writeValue` appends, and CRLF: for a value written as bytes
    /// without being built first (a generated request id).
    static func writeField(_ name: UnsafeRawBufferPointer, into buffer: inout [UInt8], value writeValue: (inout [UInt8]) -> Void) {
        buffer.append(contentsOf: name)
        buffer.append(HTTPSyntax.colon)
        buffer.append(HTTPSyntax.space)
        writeValue(&buffer)
        buffer.append(HTTPSyntax.cr)
        buffer.append(HTTPSyntax.lf)
    }

    /// Appends `Name: value CRLF` for a literal name (what the proxy itself adds).
    static func writeField(_ name: StaticString, _ value: String, into buffer: inout [UInt8]) {
        var value = value
        value.withUTF8 { valueBytes in
            writeField(HTTPSyntax.bytes(name), UnsafeRawBufferPointer(valueBytes), into: &buffer)
        }
    }

    /// Appends `Name: `, the value `writeValue` appends, and CRLF, for a literal name.
    static func writeField(_ name: StaticString, into buffer: inout [UInt8], value writeValue: (inout [UInt8]) -> Void) {
        writeField(HTTPSyntax.bytes(name), into: &buffer, value: writeValue)
    }

    /// Bytes `write(into:)` will append, to reserve capacity once.
    var serializedByteCount: Int {
        spans.reduce(0) { $0 + Int($1.nameEnd - $1.nameStart) + Int($1.valueEnd - $1.valueStart) + 4 }
    }
}
