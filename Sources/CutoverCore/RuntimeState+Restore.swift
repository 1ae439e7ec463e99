extension RuntimeState {
    /// What a restart restored from the state file that the config alone would not say, one phrase
    /// per change in config order (`web: paused`, `web/green online (config: offline)`), so the log
    /// says what it restored, not only that it did (issue 17, defect 8). Empty when nothing differs.
    public func restoredChanges(over config: Config) -> [String] {
        let configured = RuntimeState(config: config)
        var changes: [String] = []
        for profile in config.profiles {
            guard let restored = profiles[profile.name], let plain = configured.profiles[profile.name] else { continue }
            if restored.paused { changes.append("\(profile.name): paused") }
            if restored.maintenance { changes.append("\(profile.name): maintenance on") }
            if restored.readOnly != .off { changes.append("\(profile.name): readonly \(restored.readOnly.rawValue)") }
            for endpoint in profile.endpoints {
                guard let now = restored.endpoints[endpoint.name], let was = plain.endpoints[endpoint.name] else { continue }
                var parts: [String] = []
                if now.admin != was.admin { parts.append("\(now.admin.rawValue) (config: \(was.admin.rawValue))") }
                if now.priority != was.priority { parts.append("priority \(now.priority) (config: \(was.priority))") }
                if now.weight != was.weight { parts.append("weight \(now.weight) (config: \(was.weight))") }
                if !parts.isEmpty { changes.append("\(profile.name)/\(endpoint.name) " + parts.joined(separator: ", ")) }
            }
        }
        return changes
    }
}
