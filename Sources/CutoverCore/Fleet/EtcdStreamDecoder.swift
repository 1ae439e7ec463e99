/// Cuts a streamed etcd answer (`/v3/watch`, `/v3/lease/keepalive`: a chunked HTTP body carrying
/// one JSON object per line) into its messages, whatever the sizes of the reads it is fed.
///
/// The gateway flushes each message in a chunk of its own, but neither the chunk boundaries nor
/// the reads are promised to line up with messages, so both are undone here: chunk framing first,
/// then newlines.
public struct EtcdStreamDecoder: Sendable {
    /// Why the bytes are not a chunked body.
    public struct Malformed: Error, Sendable, Equatable, CustomStringConvertible {
        /// What was wrong.
        public var reason: String
        /// The reason, for the log.
        public var description: String { "malformed etcd stream: \(reason)" }
    }

    private var raw: [UInt8] = []
    /// Chunk data of the message not yet ended by a newline.
    private var line: [UInt8] = []
    /// Bytes of chunk data still to come in the current chunk; `nil` while a size line is awaited.
    private var remaining: Int?
    /// Set after the last (zero-size) chunk.
    public private(set) var isFinished = false
    /// The longest message accepted (a state document is a few kilobytes).
    private let maxMessageBytes: Int

    public init(maxMessageBytes: Int = 4 << 20) {
        self.maxMessageBytes = maxMessageBytes
    }

    /// Feeds received body bytes; returns the messages they completed, in order.
    public mutating func feed(_ bytes: [UInt8]) throws(Malformed) -> [[UInt8]] {
        raw += bytes
        var messages: [[UInt8]] = []
        var index = 0
        while index < raw.count, !isFinished {
            if let left = remaining {
                if left == 0 {
                    // The CRLF after chunk data.
                    guard raw.count - index >= 2 else { break }
                    guard raw[index] == 0x0d, raw[index + 1] == 0x0a else { throw Malformed(reason: "chunk data not followed by CRLF") }
                    index += 2
                    remaining = nil
                    continue
                }
                let take = min(left, raw.count - index)
                for byte in raw[index..<(index + take)] {
                    if byte == 0x0a {
                        if !line.isEmpty { messages.append(line) }
                        line.removeAll(keepingCapacity: true)
                    } else {
                        line.append(byte)
                    }
                }
                guard line.count <= maxMessageBytes else { throw Malformed(reason: "a message longer than \(maxMessageBytes) bytes") }
                index += take
                remaining = left - take
            } else {
                guard let lf = raw[index...].firstIndex(of: 0x0a) else {
                    guard raw.count - index <= 64 else { throw Malformed(reason: "chunk size line too long") }
                    break
                }
                var sizeLine = raw[index..<lf]
                if sizeLine.last == 0x0d { sizeLine = sizeLine.dropLast() }
                let digits = sizeLine.prefix { $0 != 0x3b }  // extensions after `;` are ignored
                guard let size = Int(String(decoding: digits, as: UTF8.self).trimmingSpaces, radix: 16), size >= 0 else {
                    throw Malformed(reason: "bad chunk size \"\(String(decoding: sizeLine, as: UTF8.self))\"")
                }
                index = lf + 1
                if size == 0 {
                    isFinished = true
                    if !line.isEmpty { messages.append(line) }
                    line.removeAll()
                } else {
                    remaining = size
                }
            }
        }
        raw.removeFirst(index)
        return messages
    }
}

extension String {
    fileprivate var trimmingSpaces: String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
