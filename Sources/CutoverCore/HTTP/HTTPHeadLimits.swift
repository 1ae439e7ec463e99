/// Size limits that protect the proxy from oversized heads; exceeding one is reported as soon as
/// the bytes received so far prove it.
public struct HTTPHeadLimits: Sendable, Equatable {
    /// Largest head, from the first byte through the final CRLFCRLF; beyond it a request gets 431.
    public var maxHeadBytes: Int
    /// Most header fields in one head; beyond it a request gets 431.
    public var maxHeaderCount: Int
    /// Longest start line, not counting its CRLF; beyond it a request gets 414.
    public var maxStartLineBytes: Int

    /// Limits with HAProxy-like defaults: 16 KiB head, 100 fields, 8 KiB start line.
    public init(maxHeadBytes: Int = 16384, maxHeaderCount: Int = 100, maxStartLineBytes: Int = 8192) {
        self.maxHeadBytes = maxHeadBytes
        self.maxHeaderCount = maxHeaderCount
        self.maxStartLineBytes = maxStartLineBytes
    }
}
