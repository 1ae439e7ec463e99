import CutoverCore

extension ProxyRuntime {
    /// Starts the optional admin HTTP listener (`/health`, `/metrics`, `/status`).
    func startAdminHTTP(on address: HostPort) throws {
        Log.warning("admin http on \(address) is not implemented yet")
    }
}
