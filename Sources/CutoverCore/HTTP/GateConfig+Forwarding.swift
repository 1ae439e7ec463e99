extension GateConfig {
    /// The request fields a backend may see: `headers` without the maintenance bypass header, whose
    /// value is a secret (issue 17, defect 4); `nil` when there is nothing to remove, so the common
    /// request costs no copy.
    ///
    /// Removed whether or not the gate is closed: the secret must not leak while maintenance is off
    /// either, and a backend that logs request headers would keep it.
    public func fieldsForBackend(_ headers: HTTPHeaders) -> HTTPHeaders? {
        guard let bypass = bypass.header, headers.contains(bypass.name) else { return nil }
        var kept = headers
        kept.remove(named: bypass.name)
        return kept
    }
}
