/// One line of the admin protocol, parsed. The socket, `cutover ctl`, signals and the agent's proxy
/// driver all speak it; the runtime executes it.
public enum AdminCommand: Sendable, Equatable {
    case help
    case showProfiles
    case showEndpoints(profile: String?)
    case showStats
    case showEvents(count: Int)
    /// `show fleet`: the fleet's nodes, their applied revisions and the store's reachability.
    case showFleet
    /// `show events --follow`: every state and health change from now on, one answer each, until
    /// the client leaves (only the admin socket streams; see `ProxyRuntime.follow`).
    case followEvents
    /// Make `endpoint` the only online endpoint of its priority; the others drain.
    /// `switch PROFILE ENDPOINT [--force] [--wait] [--guard DURATION [--wait-guard]]`: `guardWindow`
    /// opens a guard window of that length; `waitGuard` answers once the window ended, with its verdict.
    case switchTo(profile: String, endpoint: String, force: Bool, wait: Bool, guardWindow: Duration? = nil, waitGuard: Bool = false)
    case setEndpoint(profile: String, endpoint: String, state: EndpointStateChange?, priority: Int?, weight: Int?)
    case pause(profile: String)
    case resume(profile: String)
    case maintenance(profile: String, on: Bool)
    /// Set the read-only gate: `on` refuses unsafe methods, `hold` makes them wait, `off` opens it.
    case readOnly(profile: String, gate: ReadOnlyGate)
    case reload
    /// `add endpoint PROFILE/NAME ADDRESS [priority N] [weight W] [offline]`: a new endpoint at runtime.
    case addEndpoint(profile: String, endpoint: String, address: HostPort, priority: Int?, weight: Int?, offline: Bool)
    /// `remove endpoint PROFILE/NAME`: drain, then forget an endpoint `add endpoint` added.
    case removeEndpoint(profile: String, endpoint: String)
    /// `set endpoint PROFILE/NAME health up|down|auto [cause TEXT]`: an outside checker's verdict
    /// (`nil` is `auto`: the probes decide again).
    case setEndpointHealth(profile: String, endpoint: String, health: Health?, cause: String?)
    /// `deploy PROFILE ADDRESS [--name N] [--timeout D]`: add (or reuse) the endpoint, wait until
    /// its probes pass, switch to it and drain the old one.
    case deploy(profile: String, address: HostPort, name: String?, timeout: Duration?)
    /// `rollback PROFILE`: switch back to the endpoint the last switch replaced.
    case rollback(profile: String)

    /// The admin states an operator may set (`drain` is how `draining` is asked for).
    public enum EndpointStateChange: String, Sendable, Equatable {
        case online
        case offline
        case drain
    }

    /// Whether the command changes anything (and so is refused while read-only admin access is used).
    public var isMutation: Bool {
        switch self {
        case .help, .showProfiles, .showEndpoints, .showStats, .showEvents, .followEvents, .showFleet: return false
        case .switchTo, .setEndpoint, .pause, .resume, .maintenance, .readOnly, .reload: return true
        case .addEndpoint, .removeEndpoint, .setEndpointHealth, .deploy, .rollback: return true
        }
    }

    /// The command summary printed by `help`.
    public static let usage = """
        help                                          this list
        show profiles                                 profiles, their live endpoints and gates
        show endpoints [PROFILE]                      admin state, health, priority, weight, in-flight
        show stats                                    totals: connections, requests, held, switches
        show events [N]                               the last N state and health changes (default 20)
        show events --follow                          stream each change as it happens, one answer each
        show fleet                                    the fleet's nodes, their applied state revision, the store
        switch PROFILE ENDPOINT [--force] [--wait]    make ENDPOINT the live one; the others drain
               [--guard DURATION [--wait-guard]]      judge ENDPOINT for DURATION, the others stand by;
                                                      a breach of the profile's guard reverts; --wait-guard
                                                      answers when the window ended, with its verdict
        set endpoint PROFILE/NAME online|offline|drain [priority N] [weight W]
        set endpoint PROFILE/NAME health up|down|auto [cause TEXT]
                                                      an outside checker's verdict; auto: probes again
        add endpoint PROFILE/NAME HOST:PORT [priority N] [weight W] [offline]
                                                      a new endpoint at runtime (kept in the state file)
        remove endpoint PROFILE/NAME                  drain, then remove an endpoint added at runtime
        deploy PROFILE HOST:PORT [--name N] [--timeout D]
                                                      add (or reuse) it, wait until up, switch, drain
        rollback PROFILE                              switch back to the endpoint the last switch replaced
        pause PROFILE                                 hold new requests and connections
        resume PROFILE                                release held work in arrival order (a readonly
                                                      hold keeps its writes)
        maintenance PROFILE on|off                    answer 503 + maintenance page (bypass passes)
        readonly PROFILE on|off|hold                  only GET, HEAD, OPTIONS pass; others get 503 (on)
                                                      or wait as under pause, in order, until off (hold);
                                                      hold → on answers the waiting ones 503
        reload                                        re-read the config file (as SIGHUP)
        Append --json to any command for a JSON answer.
        """

    /// A parsed line: the command and whether the answer should be JSON.
    public struct Line: Sendable, Equatable {
        public let command: AdminCommand
        public let json: Bool
    }

    /// Parses one line (words separated by spaces; `--json` anywhere asks for JSON).
    public static func parse(_ line: String) throws(AdminError) -> Line {
        var words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        let json = words.contains("--json")
        words.removeAll { $0 == "--json" }
        guard let verb = words.first else { throw AdminError(.badArguments, "empty command; try 'help'") }
        let args = Array(words.dropFirst())
        return Line(command: try parseWords(verb: verb, args: args), json: json)
    }

    private static func parseWords(verb: String, args: [String]) throws(AdminError) -> AdminCommand {
        switch verb {
        case "help":
            return .help
        case "show":
            guard let what = args.first else { throw AdminError(.badArguments, "show what? profiles, endpoints, stats, events or fleet") }
            switch what {
            case "profiles":
                try expectCount(args, 1, "show profiles")
                return .showProfiles
            case "endpoints":
                guard args.count <= 2 else { throw AdminError(.badArguments, "usage: show endpoints [PROFILE]") }
                return .showEndpoints(profile: args.count == 2 ? args[1] : nil)
            case "stats":
                try expectCount(args, 1, "show stats")
                return .showStats
            case "fleet":
                try expectCount(args, 1, "show fleet")
                return .showFleet
            case "events":
                if args.contains("--follow") {
                    guard args.count == 2 else { throw AdminError(.badArguments, "usage: show events --follow") }
                    return .followEvents
                }
                guard args.count <= 2 else { throw AdminError(.badArguments, "usage: show events [N]") }
                guard args.count == 2 else { return .showEvents(count: 20) }
                guard let n = Int(args[1]), n > 0 else { throw AdminError(.badArguments, "show events: \"\(args[1])\" is not a positive number") }
                return .showEvents(count: n)
            default:
                throw AdminError(.badArguments, "show \(what)? expected profiles, endpoints, stats, events or fleet")
            }
        case "switch":
            var words = args
            var guardWindow: Duration?
            if let at = words.firstIndex(of: "--guard") {
                guard at + 1 < words.count, let duration = DurationText.parse(words[at + 1]), duration > .zero else {
                    throw AdminError(.badArguments, "switch: --guard needs a duration such as 30s")
                }
                guardWindow = duration
                words.removeSubrange(at...(at + 1))
            }
            let flags = Set(words.filter { $0.hasPrefix("--") })
            let positional = words.filter { !$0.hasPrefix("--") }
            if let unknown = flags.subtracting(["--force", "--wait", "--wait-guard"]).sorted().first {
                throw AdminError(.badArguments, "switch: unknown option \(unknown)")
            }
            guard positional.count == 2 else {
                throw AdminError(.badArguments, "usage: switch PROFILE ENDPOINT [--force] [--wait] [--guard DURATION [--wait-guard]]")
            }
            if flags.contains("--wait-guard") && guardWindow == nil {
                throw AdminError(.badArguments, "switch: --wait-guard needs --guard DURATION")
            }
            return .switchTo(
                profile: positional[0], endpoint: positional[1], force: flags.contains("--force"), wait: flags.contains("--wait"),
                guardWindow: guardWindow, waitGuard: flags.contains("--wait-guard"))
        case "set":
            if args.count >= 3, args[0] == "endpoint", args[2] == "health" { return try parseSetHealth(args) }
            return try parseSetEndpoint(args)
        case "add":
            return try parseAddEndpoint(args)
        case "remove":
            guard args.count == 2, args[0] == "endpoint" else { throw AdminError(.badArguments, "usage: remove endpoint PROFILE/NAME") }
            let (profile, endpoint) = try qualifiedName(args[1], command: "remove endpoint")
            return .removeEndpoint(profile: profile, endpoint: endpoint)
        case "deploy":
            return try parseDeploy(args)
        case "rollback":
            try expectCount(args, 1, "rollback PROFILE")
            return .rollback(profile: args[0])
        case "pause", "resume":
            try expectCount(args, 1, "\(verb) PROFILE")
            return verb == "pause" ? .pause(profile: args[0]) : .resume(profile: args[0])
        case "maintenance":
            guard args.count == 2, args[1] == "on" || args[1] == "off" else {
                throw AdminError(.badArguments, "usage: maintenance PROFILE on|off")
            }
            return .maintenance(profile: args[0], on: args[1] == "on")
        case "readonly":
            guard args.count == 2, let gate = ReadOnlyGate(rawValue: args[1]) else {
                throw AdminError(.badArguments, "usage: readonly PROFILE on|off|hold")
            }
            return .readOnly(profile: args[0], gate: gate)
        case "reload":
            try expectCount(args, 0, "reload")
            return .reload
        default:
            throw AdminError(.unknownCommand, "unknown command \"\(verb)\"; try 'help'")
        }
    }

    private static func parseSetEndpoint(_ args: [String]) throws(AdminError) -> AdminCommand {
        let usage = "usage: set endpoint PROFILE/NAME online|offline|drain [priority N] [weight W]"
        guard args.count >= 2, args[0] == "endpoint" else { throw AdminError(.badArguments, usage) }
        let qualified = args[1].split(separator: "/", omittingEmptySubsequences: false)
        guard qualified.count == 2, !qualified[0].isEmpty, !qualified[1].isEmpty else {
            throw AdminError(.badArguments, "set endpoint: \"\(args[1])\" is not PROFILE/NAME")
        }
        var state: EndpointStateChange?
        var priority: Int?
        var weight: Int?
        var rest = args.dropFirst(2)
        while let word = rest.popFirst() {
            if let change = EndpointStateChange(rawValue: word) {
                guard state == nil else { throw AdminError(.badArguments, "set endpoint: state given twice") }
                state = change
            } else if word == "priority" || word == "weight" {
                guard let text = rest.popFirst(), let value = Int(text), value >= 0 else {
                    throw AdminError(.badArguments, "set endpoint: \(word) needs a number ≥ 0")
                }
                if word == "priority" { priority = value } else {
                    guard value <= 1000 else { throw AdminError(.badArguments, "set endpoint: weight must be 0...1000") }
                    weight = value
                }
            } else {
                throw AdminError(.badArguments, "set endpoint: unexpected \"\(word)\"; \(usage)")
            }
        }
        guard state != nil || priority != nil || weight != nil else { throw AdminError(.badArguments, usage) }
        return .setEndpoint(profile: String(qualified[0]), endpoint: String(qualified[1]), state: state, priority: priority, weight: weight)
    }

    /// `PROFILE/NAME` as its two parts.
    private static func qualifiedName(_ text: String, command: String) throws(AdminError) -> (String, String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw AdminError(.badArguments, "\(command): \"\(text)\" is not PROFILE/NAME")
        }
        return (String(parts[0]), String(parts[1]))
    }

    private static func address(_ text: String, command: String) throws(AdminError) -> HostPort {
        switch HostPort.parse(text) {
        case .success(let address): return address
        case .failure(let error): throw AdminError(.badArguments, "\(command): \"\(text)\" \(error)")
        }
    }

    private static func parseSetHealth(_ args: [String]) throws(AdminError) -> AdminCommand {
        let usage = "usage: set endpoint PROFILE/NAME health up|down|auto [cause TEXT]"
        let (profile, endpoint) = try qualifiedName(args[1], command: "set endpoint")
        guard args.count >= 4 else { throw AdminError(.badArguments, usage) }
        let health: Health?
        switch args[3] {
        case "up": health = .up
        case "down": health = .down
        case "auto": health = nil
        default: throw AdminError(.badArguments, "set endpoint health: \"\(args[3])\" is not up, down or auto")
        }
        let rest = args.dropFirst(4)
        guard rest.isEmpty || (rest.first == "cause" && rest.count > 1) else { throw AdminError(.badArguments, usage) }
        return .setEndpointHealth(profile: profile, endpoint: endpoint, health: health, cause: rest.isEmpty ? nil : rest.dropFirst().joined(separator: " "))
    }

    private static func parseAddEndpoint(_ args: [String]) throws(AdminError) -> AdminCommand {
        let usage = "usage: add endpoint PROFILE/NAME HOST:PORT [priority N] [weight W] [offline]"
        guard args.count >= 3, args[0] == "endpoint" else { throw AdminError(.badArguments, usage) }
        let (profile, endpoint) = try qualifiedName(args[1], command: "add endpoint")
        let target = try address(args[2], command: "add endpoint")
        var priority: Int?
        var weight: Int?
        var offline = false
        var rest = args.dropFirst(3)
        while let word = rest.popFirst() {
            switch word {
            case "offline":
                offline = true
            case "priority", "weight":
                guard let text = rest.popFirst(), let value = Int(text), value >= 0 else {
                    throw AdminError(.badArguments, "add endpoint: \(word) needs a number ≥ 0")
                }
                if word == "priority" { priority = value } else { weight = value }
            default:
                throw AdminError(.badArguments, "add endpoint: unexpected \"\(word)\"; \(usage)")
            }
        }
        return .addEndpoint(profile: profile, endpoint: endpoint, address: target, priority: priority, weight: weight, offline: offline)
    }

    private static func parseDeploy(_ args: [String]) throws(AdminError) -> AdminCommand {
        let usage = "usage: deploy PROFILE HOST:PORT [--name N] [--timeout D]"
        var positional: [String] = []
        var name: String?
        var timeout: Duration?
        var rest = args[...]
        while let word = rest.popFirst() {
            switch word {
            case "--name":
                guard let value = rest.popFirst() else { throw AdminError(.badArguments, "deploy: --name needs a value") }
                name = value
            case "--timeout":
                guard let text = rest.popFirst(), let value = DurationText.parse(text), value > .zero else {
                    throw AdminError(.badArguments, "deploy: --timeout needs a duration such as 30s")
                }
                timeout = value
            default:
                guard !word.hasPrefix("--") else { throw AdminError(.badArguments, "deploy: unknown option \(word)") }
                positional.append(word)
            }
        }
        guard positional.count == 2 else { throw AdminError(.badArguments, usage) }
        return .deploy(profile: positional[0], address: try address(positional[1], command: "deploy"), name: name, timeout: timeout)
    }

    private static func expectCount(_ args: [String], _ count: Int, _ usage: String) throws(AdminError) {
        guard args.count == count else { throw AdminError(.badArguments, "usage: \(usage)") }
    }
}

/// An admin command that failed, answered as `ERR <code>: <message>`.
public struct AdminError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Stable codes that scripts may match on.
    public enum Code: String, Sendable {
        case unknownCommand = "unknown-command"
        case badArguments = "bad-arguments"
        case unknownProfile = "unknown-profile"
        case unknownEndpoint = "unknown-endpoint"
        case unhealthy = "unhealthy"
        case invalidConfig = "invalid-config"
        case conflict = "conflict"
        /// `switch --guard --wait-guard`: the window breached and the profile went back.
        case guardBreach = "guard-breach"
        /// `switch --guard --wait-guard`: a manual switch, reload or restart ended the window first.
        case guardEnded = "guard-ended"
        /// A fleet proxy cannot reach etcd: it serves its last state and refuses changes.
        case storeUnavailable = "store-unavailable"
        /// A fleet switch was written, but some live nodes had not applied it in time (named).
        case notApplied = "not-applied"
        /// A command a fleet proxy does not run, because it would change this proxy alone (`add
        /// endpoint`, `remove endpoint`, `deploy`: each proxy has its endpoints from its own config).
        case fleetUnsupported = "fleet-unsupported"
        case internalError = "internal"
    }

    public let code: Code
    public let message: String

    /// - Parameter message: may quote what the client sent; non-printable characters are escaped.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = Self.printable(message)
    }

    /// `text` with every control character (C0, DEL, C1) written as `\xNN` or `\u{NN}`, so an
    /// answer that quotes a request cannot carry an escape sequence to an operator's terminal.
    public static func printable(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isControl) else { return text }
        var escaped = ""
        for scalar in text.unicodeScalars {
            if !isControl(scalar) {
                escaped.unicodeScalars.append(scalar)
            } else if scalar.value < 0x80 {
                escaped += "\\x" + hex(scalar.value)
            } else {
                escaped += "\\u{" + hex(scalar.value) + "}"
            }
        }
        return escaped
    }

    private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
    }

    private static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return digits.count < 2 ? "0" + digits : digits
    }

    /// The wire form: `ERR <code>: <message>`.
    public var description: String { "ERR \(code.rawValue): \(message)" }
}
