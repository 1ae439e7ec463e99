/// What `cutover upgrade plan` reports: one entry per step and the windows users will notice.
///
/// Pure: built from the resolved runbook alone. The checks that need the proxy or a database
/// (`plan` also runs them) are the executor's.
public struct RunbookPlan: Codable, Sendable, Equatable {
    /// One step of the report.
    public struct Entry: Codable, Sendable, Equatable {
        /// The step's position, from 0.
        public var index: Int
        /// The step's kind.
        public var kind: String
        /// The step's `title`.
        public var title: String?
        /// What it does, to what.
        public var action: String
        /// Its undo, or why it has none ("cannot be undone: …").
        public var undo: String
        /// The step's bound (`nil`: waits for a person).
        public var timeoutMs: Int64?
        /// The step is marked `point_of_no_return`.
        public var pointOfNoReturn: Bool
        /// What a rollback past the step loses (`data_loss`).
        public var dataLoss: String?
        /// Why the step will not run (its `when` resolved empty or false).
        public var skipped: String?
    }

    /// A stretch of the run during which users see something: read-only, held writes, maintenance.
    public struct Window: Codable, Sendable, Equatable {
        /// `proxy readonly web`, `proxy paused web`, `proxy maintenance web`, `database read-only host=… dbname=app`.
        public var what: String
        /// `read-only`, `writes held`, `held`, `maintenance`.
        public var effect: String
        /// The step that opens it.
        public var fromStep: Int
        /// The step that closes it; `nil`: still open at the end of the runbook.
        public var toStep: Int?
        /// The most it can last: the sum of the timeouts of the steps after it opens, up to the one
        /// that closes it (`nil` when one of them waits for a person, or it never closes).
        public var maxMs: Int64?

        public init(what: String, effect: String, fromStep: Int, toStep: Int?, maxMs: Int64?) {
            self.what = what
            self.effect = effect
            self.fromStep = fromStep
            self.toStep = toStep
            self.maxMs = maxMs
        }
    }

    /// The runbook file as named by the operator.
    public var runbook: String
    /// The runbook's `name`.
    public var name: String
    public var description: String
    /// Every parameter with its resolved value.
    public var params: [NamedValue]
    /// One entry per step, in order.
    public var steps: [Entry]
    /// The gates and fences users will notice, in the order they open.
    public var windows: [Window]
    /// Sum of all step timeouts (`nil`: a `confirm` makes it unbounded).
    public var maxTotalMs: Int64?
    /// The proxies the runbook targets that are nodes of a fleet, with the nodes their steps reach
    /// (`nil`: none is). Filled by `plan` from each proxy's `show fleet`, not from the runbook.
    public var fleets: [Fleet]?

    /// A targeted proxy that is one node of a fleet: a proxy step sent to it is one etcd change
    /// that every node applies (docs/fleet.md).
    public struct Fleet: Codable, Sendable, Equatable {
        /// The admin socket the runbook's steps use.
        public var socket: String
        /// What that proxy's `show fleet` said: its node, the prefix, the store, the live nodes.
        public var fleet: FleetAnswer

        public init(socket: String, fleet: FleetAnswer) {
            self.socket = socket
            self.fleet = fleet
        }
    }

    /// The report for `runbook`.
    public init(_ runbook: Runbook) {
        self.runbook = runbook.file
        name = runbook.name
        description = runbook.description
        params = runbook.params
        steps = runbook.steps.map { step in
            Entry(index: step.index, kind: step.kind, title: step.title, action: step.action.summary, undo: step.action.plannedUndo,
                  timeoutMs: step.timeoutMs, pointOfNoReturn: step.pointOfNoReturn, dataLoss: step.dataLoss, skipped: step.skipped)
        }
        windows = Self.windows(runbook.steps)
        maxTotalMs = Self.sum(runbook.steps[...])
    }

    static func sum(_ steps: ArraySlice<RunbookStep>) -> Int64? {
        var total: Int64 = 0
        for step in steps where step.skipped == nil {
            guard let ms = step.timeoutMs else { return nil }
            total += ms
        }
        return total
    }

    /// Which gate a step opens or closes: (key, what, effect) to open, key to close.
    enum GateChange {
        case open(key: String, what: String, effect: String)
        case close(key: String)
        case none
    }

    static func gateChange(_ action: StepAction) -> GateChange {
        switch action {
        case .pause(_, let profile): return .open(key: "pause \(profile)", what: "proxy \(profile) paused", effect: "requests and connections held")
        case .resume(_, let profile): return .close(key: "pause \(profile)")
        case .maintenance(_, let profile, let on):
            return on ? .open(key: "maintenance \(profile)", what: "proxy \(profile) maintenance", effect: "503 maintenance page")
                : .close(key: "maintenance \(profile)")
        case .readOnly(_, let profile, let mode):
            switch mode {
            case .on: return .open(key: "readonly \(profile)", what: "proxy \(profile) readonly", effect: "writes refused")
            case .hold: return .open(key: "readonly \(profile)", what: "proxy \(profile) readonly hold", effect: "writes held")
            case .off: return .close(key: "readonly \(profile)")
            }
        case .dbReadOnly(let dsn, let on, _, _, let lease):
            // A leased fence ends by itself if the runner dies: the window's bound when nothing else holds.
            let what = "database \(StepAction.redacted(dsn))" + (lease.map { " (agent lease \(DurationText.format(.milliseconds($0.leaseMs))))" } ?? "")
            return on ? .open(key: "db \(dsn)", what: what, effect: "read-only") : .close(key: "db \(dsn)")
        case .switchTo, .setEndpoint, .waitHealthy, .waitDrained, .waitIdle, .checkEndpoint, .dbCopy, .dbPromote, .dbRun, .dbRename, .dbDrop, .schemaCheck,
             .dbAllowConnections, .flag, .exec, .confirm, .sleep, .wait:
            return .none
        }
    }

    static func windows(_ steps: [RunbookStep]) -> [Window] {
        var open: [(key: String, index: Int)] = []
        var result: [Window] = []
        for step in steps where step.skipped == nil {
            switch gateChange(step.action) {
            case .open(let key, let what, let effect):
                // Readonly on → hold changes the effect but not the window: close the old one here.
                if let at = open.firstIndex(where: { $0.key == key }) {
                    result[open[at].index].toStep = step.index
                    result[open[at].index].maxMs = sum(steps[(result[open[at].index].fromStep + 1)...step.index])
                    open.remove(at: at)
                }
                open.append((key, result.count))
                result.append(Window(what: what, effect: effect, fromStep: step.index, toStep: nil, maxMs: nil))
            case .close(let key):
                guard let at = open.firstIndex(where: { $0.key == key }) else { continue }
                let w = open[at].index
                result[w].toStep = step.index
                result[w].maxMs = sum(steps[(result[w].fromStep + 1)...step.index])
                open.remove(at: at)
            case .none:
                continue
            }
        }
        return result
    }

    /// The report for a person: one block per step, then the windows.
    public var text: String {
        var lines = ["runbook \(name) (\(runbook))"]
        if !description.isEmpty { lines.append("  \(description)") }
        if !params.isEmpty { lines.append("params: " + params.map { "\($0.name)=\($0.value)" }.joined(separator: " ")) }
        lines.append("")
        for entry in steps {
            if let skipped = entry.skipped {
                lines.append("\(entry.index + 1). [\(entry.kind)] \(entry.title.map { "\($0): " } ?? "")skipped (\(skipped))")
                continue
            }
            let bound = entry.timeoutMs.map { "at most \(DurationText.format(.milliseconds($0)))" } ?? "waits for a person"
            lines.append("\(entry.index + 1). [\(entry.kind)] \(entry.title.map { "\($0): " } ?? "")\(entry.action) (\(bound))")
            lines.append("   undo: \(entry.undo)")
            if entry.pointOfNoReturn {
                lines.append("   POINT OF NO RETURN: rolling back past this step loses data" + (entry.dataLoss.map { ": \($0)" } ?? ""))
            }
        }
        for target in fleets ?? [] {
            let fleet = target.fleet
            lines.append("")
            lines.append("fleet: \(target.socket) is node \(fleet.node) of fleet \(fleet.prefix) (store \(fleet.store)\(fleet.storeError.map { ": \($0)" } ?? "")); its proxy steps reach \(fleet.nodes.count) node\(fleet.nodes.count == 1 ? "" : "s"):")
            for node in fleet.nodes {
                lines.append("  \(node.node)  applied \(node.appliedRevision)  lag \(node.lag)  version \(node.version)")
            }
        }
        lines.append("")
        if windows.isEmpty {
            lines.append("windows: none (no gate or fence is closed)")
        } else {
            lines.append("windows:")
            for w in windows {
                let span = w.toStep.map { "steps \(w.fromStep + 1)–\($0 + 1)" } ?? "from step \(w.fromStep + 1) to the end of the run (not reopened!)"
                let bound = w.toStep == nil ? "unbounded" : w.maxMs.map { "at most \(DurationText.format(.milliseconds($0)))" } ?? "unbounded (waits for a person)"
                lines.append("  \(w.what): \(w.effect), \(span), \(bound)")
            }
        }
        lines.append("total: " + (maxTotalMs.map { "at most \(DurationText.format(.milliseconds($0)))" } ?? "unbounded (a confirm step waits for a person)"))
        return lines.joined(separator: "\n")
    }
}

extension StepAction {
    /// The proxy admin socket a proxy step talks to; `nil` for every other step.
    public var proxySocket: String? {
        switch self {
        case .switchTo(let socket, _, _, _, _, _), .setEndpoint(let socket, _, _, _, _, _), .pause(let socket, _), .resume(let socket, _),
             .maintenance(let socket, _, _), .readOnly(let socket, _, _), .waitHealthy(let socket, _, _), .waitDrained(let socket, _, _),
             .waitIdle(let socket, _, _), .checkEndpoint(let socket, _, _, _):
            return socket
        case .dbReadOnly, .dbCopy, .dbPromote, .dbRun, .dbRename, .dbDrop, .schemaCheck, .dbAllowConnections, .flag, .exec, .confirm, .sleep, .wait:
            return nil
        }
    }
}
