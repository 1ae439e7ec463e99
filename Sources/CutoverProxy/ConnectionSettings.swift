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

    /// What every HTTP session's state machine applies, built once per config.
    let exchange: HTTPExchangeStateMachine.Configuration

    /// Client bytes buffered beyond the request being served before the client is no longer read.
    static let maxBufferedPipeline = 65_536

    init(_ config: Config) {
        timeouts = config.timeouts
        limits = config.limits
        headLimits = HTTPHeadLimits(
            maxHeadBytes: config.limits.maxHeaderBytes, maxHeaderCount: config.limits.maxHeaderCount,
            maxStartLineBytes: config.limits.maxRequestLineBytes)
        exchange = HTTPExchangeStateMachine.Configuration(
            headLimits: headLimits, upstreamHeadLimits: upstreamHeadLimits, maxBodyBytes: limits.maxBodyBytes,
            timeouts: timeouts, maxBufferedPipeline: Self.maxBufferedPipeline)
    }
}
