import CutoverCore

/// The part of the config that connections read on every request: copied to each worker when the
/// config changes, so a reload never races with a worker reading it.
struct ConnectionSettings: Sendable {
    let timeouts: Timeouts
    let limits: Limits
    /// Limits on client request heads.
    let headLimits: HTTPHeadLimits
    /// Limits on upstream response heads: generous, upstreams are trusted more than clients.
    let upstreamHeadLimits = HTTPHeadLimits(maxHeadBytes: 65_536, maxHeaderCount: 256, maxStartLineBytes: 8_192)

    init(_ config: Config) {
        timeouts = config.timeouts
        limits = config.limits
        headLimits = HTTPHeadLimits(
            maxHeadBytes: config.limits.maxHeaderBytes, maxHeaderCount: config.limits.maxHeaderCount,
            maxStartLineBytes: config.limits.maxRequestLineBytes)
    }
}
