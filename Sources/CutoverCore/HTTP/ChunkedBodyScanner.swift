/// Validates a chunked body (RFC 9112 §7.1) as it streams through, so the proxy can forward the
/// raw bytes verbatim and still know exactly where the body, its trailers and final CRLF end.
///
/// Errors always carry 400 (a client's fault); when scanning an upstream response the I/O layer
/// answers 502 instead.
public struct ChunkedBodyScanner: Sendable {
    /// Where the scanner is inside the chunked grammar.
    enum State: Sendable, Equatable {
        /// Reading the hex digits of a chunk size.
        case size(value: UInt64, digits: Int)
        /// Whitespace after the size, allowed only before a `;` extension.
        case sizeWhitespace(value: UInt64)
        /// Skipping a chunk extension up to the CR.
        case chunkExtension(value: UInt64)
        /// Saw the CR ending a chunk-size line; the LF must follow.
        case sizeLF(value: UInt64)
        /// Inside chunk data.
        case data(remaining: UInt64)
        /// Chunk data ended; its CR must follow.
        case dataCR
        /// Chunk data and CR ended; the LF must follow.
        case dataLF
        /// At the start of a trailer field line or the final empty line.
        case trailerLineStart
        /// Inside a trailer field name.
        case trailerName
        /// Inside a trailer field value.
        case trailerValue
        /// Saw the CR ending a trailer line; the LF must follow.
        case trailerLF
        /// Saw the CR of the final empty line; the LF ends the body.
        case finalLF
        /// The body is over; nothing more belongs to it.
        case finished
    }

    private var state: State = .size(value: 0, digits: 0)
    /// Bytes of the current size or trailer line so far, excluding its CRLF.
    private var lineBytes = 0
    /// Bytes of the trailer section so far.
    private var trailerBytes = 0
    private let maxLineBytes: Int
    private let maxTrailerBytes: Int

    /// A scanner at the start of a chunked body.
    /// - Parameters:
    ///   - maxLineBytes: longest chunk-size line (with extensions) or trailer line.
    ///   - maxTrailerBytes: largest trailer section.
    public init(maxLineBytes: Int = 4096, maxTrailerBytes: Int = 16384) {
        self.maxLineBytes = maxLineBytes
        self.maxTrailerBytes = maxTrailerBytes
    }

    /// Whether the whole body, trailers and final CRLF included, has been seen.
    public var isFinished: Bool { state == .finished }

    /// Scans the next bytes of the body and returns how many of them belong to it (all of them
    /// unless the body ends inside) and whether the body is now complete.
    ///
    /// Bytes after the end (a pipelined request, say) are not consumed; after the end every call
    /// returns `(0, true)`.
    public mutating func scan(_ bytes: UnsafeRawBufferPointer) throws(HTTPParseError) -> (consumed: Int, finished: Bool) {
        var index = 0
        let count = bytes.count
        while index < count {
            let byte = bytes[index]
            index += 1
            switch state {
            case .data(let remaining):
                // Skip the whole run of data at once: this is where the bytes are.
                let available = UInt64(count - index + 1)
                if available >= remaining {
                    index += Int(remaining) - 1
                    state = .dataCR
                } else {
                    index = count
                    state = .data(remaining: remaining - available)
                }

            case .size(let value, let digits):
                try countLineByte()
                if let digit = Self.hexValue(byte) {
                    guard digits < 16 else { throw .badRequest("chunk size longer than 16 hex digits") }
                    let next = value << 4 | UInt64(digit)
                    guard next <= UInt64(Int64.max) else { throw .badRequest("chunk size too large") }
                    state = .size(value: next, digits: digits + 1)
                } else if digits == 0 {
                    throw .badRequest(HTTPSyntax.isWhitespace(byte) ? "whitespace before chunk size" : "missing chunk size")
                } else if byte == HTTPSyntax.cr {
                    state = .sizeLF(value: value)
                } else if byte == HTTPSyntax.semicolon {
                    state = .chunkExtension(value: value)
                } else if HTTPSyntax.isWhitespace(byte) {
                    state = .sizeWhitespace(value: value)
                } else {
                    throw .badRequest(byte == HTTPSyntax.lf ? "bare LF in chunked body" : "invalid chunk size")
                }

            case .sizeWhitespace(let value):
                try countLineByte()
                if byte == HTTPSyntax.semicolon {
                    state = .chunkExtension(value: value)
                } else if !HTTPSyntax.isWhitespace(byte) {
                    throw .badRequest("whitespace after chunk size")
                }

            case .chunkExtension(let value):
                if byte == HTTPSyntax.cr {
                    state = .sizeLF(value: value)
                } else if HTTPSyntax.isFieldValueByte(byte) {
                    try countLineByte()
                } else {
                    throw .badRequest(byte == HTTPSyntax.lf ? "bare LF in chunked body" : "control character in chunk extension")
                }

            case .sizeLF(let value):
                guard byte == HTTPSyntax.lf else { throw .badRequest("bare CR in chunked body") }
                lineBytes = 0
                state = value == 0 ? .trailerLineStart : .data(remaining: value)

            case .dataCR:
                guard byte == HTTPSyntax.cr else { throw .badRequest("chunk data not followed by CRLF") }
                state = .dataLF

            case .dataLF:
                guard byte == HTTPSyntax.lf else { throw .badRequest("chunk data not followed by CRLF") }
                state = .size(value: 0, digits: 0)

            case .trailerLineStart:
                try countTrailerByte()
                if byte == HTTPSyntax.cr {
                    state = .finalLF
                } else if HTTPSyntax.isTokenByte(byte) {
                    try countLineByte()
                    state = .trailerName
                } else if HTTPSyntax.isWhitespace(byte) {
                    throw .badRequest("obsolete line folding in trailer")
                } else {
                    throw .badRequest(byte == HTTPSyntax.lf ? "bare LF in chunked body" : "invalid trailer line")
                }

            case .trailerName:
                try countTrailerByte()
                try countLineByte()
                if byte == HTTPSyntax.colon {
                    state = .trailerValue
                } else if HTTPSyntax.isWhitespace(byte) {
                    throw .badRequest("whitespace between trailer name and colon")
                } else if !HTTPSyntax.isTokenByte(byte) {
                    throw .badRequest("invalid character in trailer name")
                }

            case .trailerValue:
                try countTrailerByte()
                if byte == HTTPSyntax.cr {
                    state = .trailerLF
                } else if HTTPSyntax.isFieldValueByte(byte) {
                    try countLineByte()
                } else {
                    throw .badRequest(byte == HTTPSyntax.lf ? "bare LF in chunked body" : "control character in trailer value")
                }

            case .trailerLF:
                try countTrailerByte()
                guard byte == HTTPSyntax.lf else { throw .badRequest("bare CR in chunked body") }
                lineBytes = 0
                state = .trailerLineStart

            case .finalLF:
                guard byte == HTTPSyntax.lf else { throw .badRequest("bare CR in chunked body") }
                state = .finished
                return (index, true)

            case .finished:
                return (index - 1, true)
            }
        }
        return (count, state == .finished)
    }

    private mutating func countLineByte() throws(HTTPParseError) {
        lineBytes += 1
        if lineBytes > maxLineBytes { throw .badRequest("chunk line longer than \(maxLineBytes) bytes") }
    }

    private mutating func countTrailerByte() throws(HTTPParseError) {
        trailerBytes += 1
        if trailerBytes > maxTrailerBytes { throw .badRequest("trailers larger than \(maxTrailerBytes) bytes") }
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
