/// One listener's view of a snapshot: its compiled routes, each resolved to the `ProfileRoute` of
/// the same snapshot, and its default.
///
/// A request reads the snapshot once and asks this value where it goes, so the profile it picks and
/// the endpoint that profile picks come from one generation: a switch of one profile never moves
/// another's traffic, and a keep-alive connection may carry requests for several profiles.
public final class ListenerRouting: Sendable {
    /// The listener's name, as in the config.
    public let name: String
    public let table: RouteTable
    /// The profile each route leads to, by the route's index in the config.
    public let routeProfiles: [ProfileRoute]
    /// Where unmatched work goes; `nil` answers 404 (HTTP) or closes (TCP).
    public let fallback: ProfileRoute?

    public init(name: String, table: RouteTable, routeProfiles: [ProfileRoute], fallback: ProfileRoute?) {
        self.name = name
        self.table = table
        self.routeProfiles = routeProfiles
        self.fallback = fallback
    }

    /// Resolves `listener`'s routes against the profiles of a snapshot being built.
    ///
    /// - Precondition: the config was validated, so every profile named exists.
    public convenience init(listener: ListenerConfig, profiles: [ProfileRoute]) {
        func route(_ name: String) -> ProfileRoute { profiles.first { $0.name == name }! }
        self.init(
            name: listener.name, table: RouteTable(listener.routes), routeProfiles: listener.routes.map { route($0.profile) },
            fallback: listener.profile.map(route))
    }

    /// Whether the listener has no routes, so every request takes `fallbackDecision` and the
    /// caller need not even look up `Host`.
    public var routesNothing: Bool { table.isEmpty }

    /// Where unmatched work goes.
    public var fallbackDecision: RouteDecision { resolve(nil) }

    /// Where an HTTP request goes: `target` as on the request line, `hostHeader` the `Host` value.
    public func decide(target: UnsafeRawBufferPointer, hostHeader: UnsafeRawBufferPointer?) -> RouteDecision {
        // A listener without routes skips even the target scan: the hot path of a single-app proxy.
        guard !table.isEmpty else { return resolve(nil) }
        return resolve(table.match(target: target, hostHeader: hostHeader))
    }

    /// `String` convenience over `decide(target:hostHeader:)` (no copy for native strings).
    public func decide(target: String, hostHeader: String?) -> RouteDecision {
        guard !table.isEmpty else { return resolve(nil) }
        return resolve(table.match(target: target, hostHeader: hostHeader))
    }

    private func resolve(_ match: RouteMatch?) -> RouteDecision {
        if let match { return .profile(routeProfiles[match.route], match) }
        return fallback.map { .profile($0, nil) } ?? .noRoute
    }

    /// Where a TCP connection goes by the TLS server name it asked for (`nil`: none was sent).
    public func decide(serverName: UnsafeRawBufferPointer?) -> RouteDecision {
        let empty = UnsafeRawBufferPointer(start: nil, count: 0)
        guard let entry = table.match(host: serverName, path: empty) else { return resolve(nil) }
        return .profile(routeProfiles[entry.route], nil)
    }

    /// Whether connections must be peeked at for a server name before they can be routed.
    public var needsServerName: Bool { !table.isEmpty }
}

/// Where one request or connection goes.
public enum RouteDecision: Sendable {
    /// To this profile; the match says what to strip from the target (`nil` for the default).
    case profile(ProfileRoute, RouteMatch?)
    /// Nothing matched and the listener has no default profile.
    case noRoute
}
