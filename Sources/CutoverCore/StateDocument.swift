import Foundation

/// The state file's JSON: `RuntimeState` without health (probes re-learn it) and without drains
/// (transient: a draining endpoint is saved as offline).
///
/// `{"profiles":{"web":{"endpoints":{"blue":{"priority":1,"state":"online","weight":1}},"maintenance":false,
/// "paused":false,"readonly":false,"readonly_gate":"off"}},"version":1}` — the keys of the first state
/// files (version 1) plus `readonly_gate`, so a file saved by an older proxy is read as it was.
public struct StateDocument: Codable, Sendable, Equatable {
    /// The format version; 1 since the first release.
    public var version: Int
    /// By profile name.
    public var profiles: [String: Profile]

    /// The saved part of one profile.
    public struct Profile: Codable, Sendable, Equatable {
        /// By endpoint name.
        public var endpoints: [String: Endpoint]
        /// Whether new work is held.
        public var paused: Bool
        /// Whether the maintenance gate answers 503.
        public var maintenance: Bool
        /// Whether writes are kept from the backends (key `readonly`): true at `on` and at `hold`, so
        /// that an older binary restores a held gate as closed, not open.
        public var readonly: Bool
        /// The read-only gate's position (key `readonly_gate`); absent in files written before `hold`.
        public var readonlyGate: ReadOnlyGate?
        /// The guard window open when the file was written (key `guard`); absent when none was.
        public var guardWindow: GuardRecord?
        /// Endpoints `add endpoint` added at runtime (key `added_endpoints`), in the order added; their
        /// state, priority and weight are in `endpoints`. Absent when there are none, and in older files.
        public var addedEndpoints: [AddedEndpoint]?

        public init(endpoints: [String: Endpoint], paused: Bool, maintenance: Bool, readonly gate: ReadOnlyGate, guardWindow: GuardRecord? = nil) {
            self.endpoints = endpoints
            self.paused = paused
            self.maintenance = maintenance
            self.readonly = gate.isClosed
            self.readonlyGate = gate
            self.guardWindow = guardWindow
        }

        /// The gate to restore: `readonly_gate` when saved, else the Bool of older files (closed is `on`).
        public var gate: ReadOnlyGate { readonlyGate ?? (readonly ? .on : .off) }

        private enum CodingKeys: String, CodingKey {
            case endpoints, paused, maintenance, readonly, readonlyGate, addedEndpoints
            case guardWindow = "guard"
        }

        /// Decodes the JSON form; a gate that is absent is off (version 1 files could omit them).
        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            endpoints = try container.decode([String: Endpoint].self, forKey: .endpoints)
            paused = try container.decodeIfPresent(Bool.self, forKey: .paused) ?? false
            maintenance = try container.decodeIfPresent(Bool.self, forKey: .maintenance) ?? false
            readonly = try container.decodeIfPresent(Bool.self, forKey: .readonly) ?? false
            readonlyGate = try container.decodeIfPresent(ReadOnlyGate.self, forKey: .readonlyGate)
            guardWindow = try container.decodeIfPresent(GuardRecord.self, forKey: .guardWindow)
            addedEndpoints = try container.decodeIfPresent([AddedEndpoint].self, forKey: .addedEndpoints)
        }
    }

    /// An endpoint added at runtime: its name and `host:port` address.
    public struct AddedEndpoint: Codable, Sendable, Equatable {
        public var name: String
        public var address: String

        public init(name: String, address: String) {
            self.name = name
            self.address = address
        }
    }

    /// The saved part of one endpoint: what the operator set.
    public struct Endpoint: Codable, Sendable, Equatable {
        /// `online` or `offline` (`draining` is never saved, but read as written).
        public var state: String
        /// Lower wins.
        public var priority: Int
        /// Share among endpoints of the same priority.
        public var weight: Int

        public init(state: String, priority: Int, weight: Int) {
            self.state = state
            self.priority = priority
            self.weight = weight
        }
    }

    public init(version: Int = 1, profiles: [String: Profile]) {
        self.version = version
        self.profiles = profiles
    }

    /// The document for `state`; a draining endpoint is saved as offline.
    public init(_ state: RuntimeState) {
        var profiles: [String: Profile] = [:]
        for (name, profile) in state.profiles {
            var endpoints: [String: Endpoint] = [:]
            for (endpointName, endpoint) in profile.endpoints {
                // A drain is transient: after a restart the endpoint is simply offline.
                let admin = endpoint.admin == .draining ? AdminState.offline : endpoint.admin
                endpoints[endpointName] = Endpoint(state: admin.rawValue, priority: endpoint.priority, weight: endpoint.weight)
            }
            var saved = Profile(endpoints: endpoints, paused: profile.paused, maintenance: profile.maintenance, readonly: profile.readOnly, guardWindow: profile.guardWindow)
            if !profile.added.isEmpty { saved.addedEndpoints = profile.added.map { AddedEndpoint(name: $0.name, address: $0.address.description) } }
            profiles[name] = saved
        }
        self.init(profiles: profiles)
    }

    /// Why saved bytes are not a state document: the key path and the reason.
    public struct DecodeError: Error, Sendable, Equatable, CustomStringConvertible {
        /// Dotted key path (`profiles.web.endpoints.blue.state`); empty for the whole document.
        public var key: String
        /// What is wrong with the value there.
        public var reason: String
        /// `key: reason`, for the state file's error message.
        public var description: String { key.isEmpty ? reason : "\(key): \(reason)" }
    }

    /// Decodes the saved bytes (the current format and version 1, which are the same keys).
    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> StateDocument {
        let document: StateDocument
        do {
            document = try JSONCoding.decoder.decode(StateDocument.self, from: Data(bytes))
        } catch let error as DecodingError {
            throw Self.describe(error)
        } catch {
            throw DecodeError(key: "", reason: "\(error)")
        }
        guard document.version == 1 else {
            throw DecodeError(key: "version", reason: "\(document.version) is not a version this proxy reads (1)")
        }
        // Sorted, so the entry named is the same on every start.
        for (name, profile) in document.profiles.sorted(by: { $0.key < $1.key }) {
            for (index, added) in (profile.addedEndpoints ?? []).enumerated() {
                if case .failure(let error) = HostPort.parse(added.address) {
                    throw DecodeError(key: "profiles.\(name).added_endpoints[\(index)].address", reason: "\"\(added.address)\" \(error)")
                }
            }
            for (endpointName, endpoint) in profile.endpoints.sorted(by: { $0.key < $1.key }) {
                let path = "profiles.\(name).endpoints.\(endpointName)"
                guard AdminState(rawValue: endpoint.state) != nil else {
                    throw DecodeError(
                        key: "\(path).state", reason: "\"\(endpoint.state)\" is not one of \(AdminState.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                // The same ranges as the config and `set endpoint`: a value neither would take
                // must not come in through the file.
                guard endpoint.priority >= 0 else {
                    throw DecodeError(key: "\(path).priority", reason: "must be 0 or more (lower wins), got \(endpoint.priority)")
                }
                guard (0...ConfigLoader.maxWeight).contains(endpoint.weight) else {
                    throw DecodeError(key: "\(path).weight", reason: "must be 0-\(ConfigLoader.maxWeight), got \(endpoint.weight)")
                }
            }
        }
        return document
    }

    /// The document as bytes, in the shared JSON style.
    public func encoded() -> [UInt8] {
        // Only non-finite doubles fail to encode, and the document has none.
        (try? Array(JSONCoding.encoder.encode(self))) ?? Array("{}".utf8)
    }

    /// The runtime state the document describes, health unknown.
    public var runtimeState: RuntimeState {
        var state = RuntimeState()
        for (name, profile) in profiles {
            var endpoints: [String: EndpointRuntime] = [:]
            for (endpointName, endpoint) in profile.endpoints {
                guard let admin = AdminState(rawValue: endpoint.state) else { continue }  // refused by `decode`
                endpoints[endpointName] = EndpointRuntime(admin: admin, priority: endpoint.priority, weight: endpoint.weight)
            }
            // Checked by `decode`; an entry without its `endpoints` line starts online at priority and weight 1.
            let added = (profile.addedEndpoints ?? []).compactMap { entry -> EndpointConfig? in
                guard case .success(let address) = HostPort.parse(entry.address) else { return nil }
                let saved = endpoints[entry.name]
                return EndpointConfig(name: entry.name, address: address, priority: saved?.priority ?? 1, weight: saved?.weight ?? 1, state: saved?.admin ?? .online)
            }
            state.profiles[name] = ProfileRuntime(
                endpoints: endpoints, paused: profile.paused, maintenance: profile.maintenance, readOnly: profile.gate,
                guardWindow: profile.guardWindow, added: added)
        }
        return state
    }

    private static func describe(_ error: DecodingError) -> DecodeError {
        func path(_ keys: [any CodingKey]) -> String {
            keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context):
            return DecodeError(key: path(context.codingPath + [key]), reason: "missing")
        case .typeMismatch(let type, let context):
            return DecodeError(key: path(context.codingPath), reason: "expected \(type)")
        case .valueNotFound(let type, let context):
            return DecodeError(key: path(context.codingPath), reason: "expected \(type), got null")
        case .dataCorrupted(let context):
            return DecodeError(key: path(context.codingPath), reason: context.underlyingError.map { "not JSON: \($0)" } ?? context.debugDescription)
        @unknown default:
            return DecodeError(key: "", reason: "\(error)")
        }
    }
}
