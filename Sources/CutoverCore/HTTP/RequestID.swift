/// The id that follows one request through the proxy, the backend and the access log: the client's
/// `X-Request-Id` when it is sane, else one the proxy made.
public struct RequestID: Sendable, Equatable {
    /// The header that carries it both ways, as the literal the proxy writes.
    static let headerField: StaticString = "X-Request-Id"
    /// The header that carries it both ways.
    public static let headerName = headerField.description
    /// The longest client id taken as it is (longer ones are replaced: a log line is no place for a
    /// payload).
    public static let maxBytes = 200

    /// The id as received, or a generated one as its two parts: a generated id is written into the
    /// upstream head as bytes, and made into a `String` only for the access log.
    private enum Form: Sendable {
        case text(String)
        case serial(prefix: String, number: UInt64)
    }

    private let form: Form
    /// The proxy made it (there was no sane client id): it must be sent upstream in place of
    /// whatever the client sent.
    public let generated: Bool

    /// An id as given.
    public init(value: String, generated: Bool) {
        self.form = .text(value)
        self.generated = generated
    }

    /// A generated id: `prefix` then `number` in lowercase hex.
    init(prefix: String, number: UInt64) {
        self.form = .serial(prefix: prefix, number: number)
        self.generated = true
    }

    /// The id's text.
    public var value: String {
        switch form {
        case .text(let text): return text
        case .serial(let prefix, let number): return prefix + String(number, radix: 16)
        }
    }

    /// Appends the id's bytes (the same as `value`'s UTF-8) without building `value`.
    func write(into buffer: inout [UInt8]) {
        switch form {
        case .text(let text):
            buffer.append(contentsOf: text.utf8)
        case .serial(let prefix, let number):
            buffer.append(contentsOf: prefix.utf8)
            HexDigits.append(number, into: &buffer)
        }
    }

    public static func == (left: RequestID, right: RequestID) -> Bool {
        left.generated == right.generated && left.value == right.value
    }

    /// The client's id, when it sent exactly one `X-Request-Id` of 1 to `maxBytes` visible ASCII
    /// characters (no space, no control byte, nothing a log line or a header could be split on).
    public static func fromClient(_ headers: HTTPHeaders) -> RequestID? {
        var found: RequestID?
        var fields = 0
        headers.forEachValue(named: headerName) { bytes in
            fields += 1
            guard fields == 1, (1...maxBytes).contains(bytes.count), bytes.allSatisfy({ (0x21...0x7E).contains($0) }) else {
                found = nil
                return false
            }
            found = RequestID(value: String(decoding: bytes, as: UTF8.self), generated: false)
            return true
        }
        return found
    }
}

/// Makes request ids for one worker: a prefix random per process and naming the worker, then the
/// worker's own counter in hex (`3f9a61c2-1-2b`). No lock, no UUID and no string per request: a
/// counter increment, written as hex digits straight into the upstream head; unique within a
/// process, and across processes but for a 1 in 2³² clash of their random prefixes.
public struct RequestIDGenerator: Sendable {
    private let prefix: String
    private var count: UInt64 = 0

    /// A generator for worker `worker` of the process whose random tag is `processTag`.
    public init(processTag: UInt32, worker: Int) {
        let tag = String(processTag, radix: 16)
        prefix = String(repeating: "0", count: 8 - tag.count) + tag + "-" + String(worker, radix: 16) + "-"
    }

    /// The next id of this worker.
    public mutating func next() -> RequestID {
        count &+= 1
        return RequestID(prefix: prefix, number: count)
    }

    /// The id of a request with these headers: the client's when sane, else the next one made here.
    public mutating func id(for headers: HTTPHeaders) -> RequestID {
        RequestID.fromClient(headers) ?? next()
    }
}

/// Lowercase hexadecimal digits of a number, written as bytes.
enum HexDigits {
    static func append(_ number: UInt64, into buffer: inout [UInt8]) {
        let digits = max(1, (64 - number.leadingZeroBitCount + 3) / 4)
        for position in stride(from: digits - 1, through: 0, by: -1) {
            let nibble = UInt8(truncatingIfNeeded: number >> (UInt64(position) * 4)) & 0xF
            buffer.append(nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10)
        }
    }
}
