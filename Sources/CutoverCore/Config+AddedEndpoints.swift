extension Config {
    /// The config the proxy runs: this one (from the file) with the endpoints `add endpoint` added
    /// at runtime appended to their profiles. A name the file defines wins over an added one, so
    /// moving an endpoint into the file and reloading keeps one endpoint of that name.
    public func including(addedEndpointsOf state: RuntimeState) -> Config {
        var next = self
        for (index, profile) in profiles.enumerated() {
            for added in state.profiles[profile.name]?.added ?? [] where profile.endpoint(named: added.name) == nil {
                next.profiles[index].endpoints.append(added)
            }
        }
        return next
    }
}
