import CutoverControl
import CutoverCore
import Foundation
import Glibc

/// Persists `RuntimeState` so that a restart keeps switches, pauses and gates.
///
/// Writes go to a temporary file that is fsync'd and renamed over the old one, so a crash leaves
/// either the old or the new state, never a torn file. Health is not persisted: probes re-learn it.
struct StateFile {
    let path: String

    /// Why the state file could not be read or written.
    struct Failure: Error, CustomStringConvertible {
        let path: String
        let reason: String
        var description: String { "state file \(path): \(reason)" }
    }

    func write(_ state: RuntimeState) throws {
        var profiles: [String: Any] = [:]
        for (name, profile) in state.profiles {
            var endpoints: [String: Any] = [:]
            for (endpointName, endpoint) in profile.endpoints {
                // A drain is transient: after a restart the endpoint is simply offline.
                let admin = endpoint.admin == .draining ? AdminState.offline : endpoint.admin
                endpoints[endpointName] = ["state": admin.rawValue, "priority": endpoint.priority, "weight": endpoint.weight]
            }
            profiles[name] = [
                "paused": profile.paused, "maintenance": profile.maintenance, "readonly": profile.readOnly,
                "endpoints": endpoints,
            ]
        }
        let data = try JSONSerialization.data(withJSONObject: ["version": 1, "profiles": profiles], options: [.sortedKeys, .prettyPrinted])
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty { try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        do {
            try DurableFile.write(Array(data), to: path)
        } catch {
            throw Failure(path: error.path, reason: error.reason)
        }
    }

    /// The saved state, or `nil` when there is no file (start from config).
    func read() throws -> RuntimeState? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else { throw Failure(path: path, reason: "unreadable") }
        guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let profiles = root["profiles"] as? [String: Any] else {
            throw Failure(path: path, reason: "not a Cutover state file")
        }
        var state = RuntimeState()
        for (name, value) in profiles {
            guard let profile = value as? [String: Any], let endpoints = profile["endpoints"] as? [String: Any] else { continue }
            var runtimeEndpoints: [String: EndpointRuntime] = [:]
            for (endpointName, endpointValue) in endpoints {
                guard let endpoint = endpointValue as? [String: Any],
                      let admin = (endpoint["state"] as? String).flatMap(AdminState.init(rawValue:)),
                      let priority = endpoint["priority"] as? Int, let weight = endpoint["weight"] as? Int else { continue }
                runtimeEndpoints[endpointName] = EndpointRuntime(admin: admin, priority: priority, weight: weight)
            }
            state.profiles[name] = ProfileRuntime(
                endpoints: runtimeEndpoints, paused: profile["paused"] as? Bool ?? false,
                maintenance: profile["maintenance"] as? Bool ?? false, readOnly: profile["readonly"] as? Bool ?? false)
        }
        return state
    }
}
