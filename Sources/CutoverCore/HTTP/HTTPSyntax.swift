/// Byte classes and ASCII comparisons from RFC 9110 §5.6 shared by the parser, the chunked scanner
/// and header queries; kept allocation-free because they run on every byte of every head.
enum HTTPSyntax {
    static let cr: UInt8 = 0x0D
    static let lf: UInt8 = 0x0A
    static let space: UInt8 = 0x20
    static let tab: UInt8 = 0x09
    static let colon: UInt8 = 0x3A
    static let comma: UInt8 = 0x2C
    static let semicolon: UInt8 = 0x3B

    /// `tchar`: the characters allowed in methods, field names and transfer codings.
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
            UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
            UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    /// `field-vchar / SP / HTAB`: everything but control characters and DEL (obs-text is allowed).
    static func isFieldValueByte(_ byte: UInt8) -> Bool {
        byte >= 0x20 ? byte != 0x7F : byte == tab
    }

    static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == space || byte == tab
    }

    static func lowercased(_ byte: UInt8) -> UInt8 {
        byte &- UInt8(ascii: "A") < 26 ? byte | 0x20 : byte
    }

    /// Compares ASCII case-insensitively; `lowercase` must already be lower case.
    static func equalsIgnoringCase(_ text: String, lowercase: String) -> Bool {
        let a = text.utf8
        let b = lowercase.utf8
        guard a.count == b.count else { return false }
        // Both sides are folded, so callers need not lower-case a name first (that allocated a
        // String per header lookup on the hot path). Native strings compare as plain byte buffers;
        // the generic sequence comparison cost several times more per call.
        let fast = a.withContiguousStorageIfAvailable { left in
            b.withContiguousStorageIfAvailable { right in
                for index in 0..<left.count where lowercased(left[index]) != lowercased(right[index]) { return false }
                return true
            }
        }
        if let fast, let equal = fast { return equal }
        return a.elementsEqual(b) { lowercased($0) == lowercased($1) }
    }

    /// Compares raw bytes ASCII case-insensitively with a lower-case literal.
    static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, lowercase: StaticString) -> Bool {
        guard bytes.count == lowercase.utf8CodeUnitCount else { return false }
        let literal = lowercase.utf8Start
        for index in 0..<bytes.count where lowercased(bytes[index]) != literal[index] {
            return false
        }
        return true
    }

    /// Calls `body` with each comma-separated list element of `value`, OWS trimmed and empty
    /// elements skipped (RFC 9110 §5.6.1); `body` returns false to stop early.
    static func forEachListElement(_ value: String, _ body: (Substring.UTF8View) -> Bool) {
        let utf8 = value.utf8
        var start = utf8.startIndex
        while start < utf8.endIndex {
            let end = utf8[start...].firstIndex(of: comma) ?? utf8.endIndex
            var lower = start
            var upper = end
            while lower < upper, isWhitespace(utf8[lower]) { lower = utf8.index(after: lower) }
            while lower < upper, isWhitespace(utf8[utf8.index(before: upper)]) { upper = utf8.index(before: upper) }
            if lower < upper, !body(value[lower..<upper].utf8) { return }
            start = end == utf8.endIndex ? end : utf8.index(after: end)
        }
    }

    /// Whether a list element equals a lower-case token, ignoring case.
    static func element(_ element: Substring.UTF8View, equals lowercase: String) -> Bool {
        element.count == lowercase.utf8.count && element.elementsEqual(lowercase.utf8) { lowercased($0) == lowercased($1) }
    }
}
