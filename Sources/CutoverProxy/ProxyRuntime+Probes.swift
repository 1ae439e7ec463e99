import CutoverCore

extension ProxyRuntime {
    /// (Re)starts active health probes for the current config.
    ///
    /// - Important: call on `controlQueue`.
    func startProbes() {}
}
