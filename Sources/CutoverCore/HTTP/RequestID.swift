/// The id that follows one request through the proxy, the backend and the access log: the client's
/// `X-Request-Id` when it is sane, else one the proxy made.
public struct RequestID: Sendable, Equatable {
    /// The header that carries it both ways.
    public static let headerName = "X-Request-Id"
    /// The longest client id taken as it is (longer ones are replaced: a log line is no place for a
    /// payload).
    public static let maxBytes = 200

    /// The id's text.
    public let value: String
    /// The proxy made it (there was no sane client id): it must be sent upstream in place of
    /// whatever the client sent.
    public let generated: Bool

    /// An id as given.
    public init(value: String, generated: Bool) {
        self.value = value
        self.generated = generated
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
/// worker's own counter in hex (`3f9a61c2-1-2b`). No lock, no UUID per request: a counter increment
/// and one short string; unique within a process, and across processes but for a 1 in 2³² clash of
/// their random prefixes.
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
        return RequestID(value: prefix + String(count, radix: 16), generated: true)
    }

    /// The id of a request with these headers: the client's when sane, else the next one made here.
    public mutating func id(for headers: HTTPHeaders) -> RequestID {
        RequestID.fromClient(headers) ?? next()
    }
}
