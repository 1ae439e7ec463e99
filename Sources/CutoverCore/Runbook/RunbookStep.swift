/// One step of a resolved runbook: what it does (`action`) and the keys every step shares.
///
/// Resolved means every `${name}` is substituted and relative file paths are absolute, so the
/// journal can hold it and `status`, `rollback` and `resume` never read the runbook file again.
public struct RunbookStep: Codable, Sendable, Equatable {
    /// Position in `steps`, from 0.
    public var index: Int
    /// What the step does, with its typed fields.
    public var action: StepAction
    /// The operator's name for the step (`title`), printed by plan and progress lines.
    public var title: String?
    /// Upper bound on the step (`timeout`, or the kind's default); `nil` only for `confirm`, which waits for a person.
    public var timeoutMs: Int64?
    /// Rolling back past this step loses data (`point_of_no_return`).
    public var pointOfNoReturn: Bool
    /// What a rollback past this step loses, in the runbook author's words (`data_loss`).
    public var dataLoss: String?
    /// Why the step does not run, when its `when` resolved to an empty or false value (`when`
    /// "${fingerprint}" with no fingerprint given): it stays in the list, so step numbers match the file.
    public var skipped: String?

    public init(index: Int, action: StepAction, title: String? = nil, timeoutMs: Int64?, pointOfNoReturn: Bool = false, dataLoss: String? = nil,
                skipped: String? = nil) {
        self.index = index
        self.action = action
        self.title = title
        self.timeoutMs = timeoutMs
        self.pointOfNoReturn = pointOfNoReturn
        self.dataLoss = dataLoss
        self.skipped = skipped
    }

    /// The step's kind as written in the runbook.
    public var kind: String { action.kind }

    /// `steps[3] pause (hold new requests)`: how messages name the step.
    public var label: String {
        "steps[\(index)] \(kind)" + (title.map { " (\($0))" } ?? "")
    }
}

/// A `name = value` pair kept in order (environment variables, flag driver options, parameters).
///
/// Pairs rather than a dictionary: the journal's snake_case key conversion must never rename an
/// environment variable such as `PGHOST`.
/// A fence held by an agent under a lease for the run that took it: the runner renews it while it
/// lives, and the agent gives the database back read-write when renewals stop for `leaseMs`.
public struct FenceLease: Codable, Sendable, Equatable, Hashable {
    /// The agent's admin socket.
    public var agent: String
    /// How long the fence outlives the last renewal.
    public var leaseMs: Int64

    public init(agent: String, leaseMs: Int64) {
        self.agent = agent
        self.leaseMs = leaseMs
    }
}

public struct NamedValue: Codable, Sendable, Equatable {
    /// The name, exactly as written.
    public var name: String
    /// Its value after substitution.
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// What a step does: one case per step kind of docs/runbooks.md, with that kind's keys.
public enum StepAction: Codable, Sendable, Equatable {
    // Proxy steps: one admin-socket command each.
    /// `switch`: make `endpoint` the live one (`wait`: until the others drained; `force`: even if not
    /// up; `guardMs`: judge it for a guard window, the step failing on a breach, which reverts).
    case switchTo(socket: String, profile: String, endpoint: String, wait: Bool, force: Bool, guardMs: Int64? = nil)
    /// `set-endpoint`: an endpoint's admin state, priority or weight.
    case setEndpoint(socket: String, profile: String, endpoint: String, state: String?, priority: Int?, weight: Int?)
    /// `pause`: hold new requests and connections.
    case pause(socket: String, profile: String)
    /// `resume`: release held work in arrival order.
    case resume(socket: String, profile: String)
    /// `maintenance`: the maintenance gate on or off.
    case maintenance(socket: String, profile: String, on: Bool)
    /// `readonly`: the read-only gate on, off or hold.
    case readOnly(socket: String, profile: String, mode: ReadOnlyGate)
    /// `wait-healthy`: until the endpoint is up.
    case waitHealthy(socket: String, profile: String, endpoint: String)
    /// `wait-drained`: until the endpoint is not live and has nothing in flight.
    case waitDrained(socket: String, profile: String, endpoint: String)
    /// `wait-idle`: until the profile has no request in flight (`writesOnly`: no unsafe-method
    /// request), e.g. after holding writes and before fencing the database underneath.
    case waitIdle(socket: String, profile: String, writesOnly: Bool)
    /// `check-endpoint`: fail unless the endpoint's admin state is `admin` (`online`, `offline`,
    /// `draining`); plan runs it too, so a runbook that would start from the wrong state is refused.
    case checkEndpoint(socket: String, profile: String, endpoint: String, admin: String)
    // Database steps (PostgreSQL).
    /// `db-readonly`: the database read-only fence on or off; with `lease`, through an agent that
    /// gives the database back read-write if the run stops renewing (its runner died).
    case dbReadOnly(dsn: String, on: Bool, graceMs: Int64, controlDatabase: String?, lease: FenceLease?)
    /// `db-copy`: a stage copy of `from` into `to` (`auto`, `template` or `dump`).
    case dbCopy(from: String, to: String, method: String)
    /// `db-promote`: a streaming standby becomes a primary.
    case dbPromote(standby: String, primary: String?)
    /// `db-run`: a migration file (absolute path), with its optional undo file.
    case dbRun(dsn: String, file: String, transactional: Bool?, undoFile: String?)
    /// `db-rename`: renames (`name` → `value`) in one transaction.
    case dbRename(dsn: String, renames: [NamedValue])
    /// `db-drop`: drop database `name` (`force`: even one cutover did not create).
    case dbDrop(dsn: String, name: String, force: Bool)
    /// `schema-check`: fail when the schema differs from what is pinned.
    case schemaCheck(dsn: String, fingerprint: String?, versionQuery: String?, expect: String?)
    /// Engine-internal, only ever an undo (no runbook writes it): give `database` its connections
    /// back (`ALLOW_CONNECTIONS true`), which a template copy killed midway leaves refused on its source.
    case dbAllowConnections(dsn: String, database: String)
    // Everything else.
    /// `flag`: a maintenance flag through a flag driver, with its options (`on-sql`, …).
    case flag(on: Bool, driver: String, options: [NamedValue])
    /// `exec`: a program, its optional undo program, extra environment.
    case exec(command: [String], undo: [String]?, env: [NamedValue])
    /// `confirm`: a person types yes (or `--yes`).
    case confirm(prompt: String)
    /// `sleep`: wait this long.
    case sleep(durationMs: Int64)
    /// `wait`: re-run a program until it exits 0.
    case wait(command: [String], intervalMs: Int64)

    /// The `kind` string of the runbook format.
    public var kind: String {
        switch self {
        case .switchTo: return "switch"
        case .setEndpoint: return "set-endpoint"
        case .pause: return "pause"
        case .resume: return "resume"
        case .maintenance: return "maintenance"
        case .readOnly: return "readonly"
        case .waitHealthy: return "wait-healthy"
        case .waitDrained: return "wait-drained"
        case .waitIdle: return "wait-idle"
        case .checkEndpoint: return "check-endpoint"
        case .dbReadOnly: return "db-readonly"
        case .dbCopy: return "db-copy"
        case .dbPromote: return "db-promote"
        case .dbRun: return "db-run"
        case .dbRename: return "db-rename"
        case .dbDrop: return "db-drop"
        case .schemaCheck: return "schema-check"
        case .dbAllowConnections: return "db-allow-connections"
        case .flag: return "flag"
        case .exec: return "exec"
        case .confirm: return "confirm"
        case .sleep: return "sleep"
        case .wait: return "wait"
        }
    }

    /// Every kind, in the order the reference documents them.
    public static let kinds = [
        "switch", "set-endpoint", "pause", "resume", "maintenance", "readonly", "wait-healthy", "wait-drained",
        "wait-idle", "check-endpoint", "db-readonly", "db-copy", "db-promote", "db-run", "db-rename", "db-drop", "schema-check",
        "flag", "exec", "confirm", "sleep", "wait",
    ]

    /// The kind's timeout when the step sets none, in milliseconds (`nil`: unbounded, a person answers).
    public static func defaultTimeoutMs(kind: String) -> Int64? {
        switch kind {
        case "switch", "wait-healthy", "wait-drained", "wait-idle", "db-promote", "db-drop", "exec", "wait": return 60_000
        case "db-copy", "db-run": return 600_000
        case "db-readonly", "db-rename", "schema-check", "flag": return 30_000
        case "confirm": return nil
        default: return 10_000
        }
    }

    /// One line for plan and progress: `switch web to green (waits for blue to drain)`.
    public var summary: String {
        switch self {
        case .switchTo(_, let profile, let endpoint, let wait, let force, let guardMs):
            return "switch \(profile) to \(endpoint)" + (force ? " (force)" : "")
                + (guardMs.map { ", guarded for \(DurationText.format(.milliseconds($0))) (a breach reverts and fails the step)" } ?? "")
                + (wait ? ", waiting until the others have drained" : "")
        case .setEndpoint(_, let profile, let endpoint, let state, let priority, let weight):
            let parts = [state, priority.map { "priority \($0)" }, weight.map { "weight \($0)" }].compactMap { $0 }
            return "set endpoint \(profile)/\(endpoint) \(parts.joined(separator: " "))"
        case .pause(_, let profile): return "pause \(profile): hold new requests and connections"
        case .resume(_, let profile): return "resume \(profile): release held work in arrival order"
        case .maintenance(_, let profile, let on): return "maintenance \(profile) \(on ? "on" : "off")"
        case .readOnly(_, let profile, let mode):
            switch mode {
            case .on: return "readonly \(profile) on: only GET, HEAD and OPTIONS pass"
            case .off: return "readonly \(profile) off: writes pass again (held writes are released)"
            case .hold: return "readonly \(profile) hold: GET, HEAD and OPTIONS pass, writes are held"
            }
        case .waitHealthy(_, let profile, let endpoint): return "wait until \(profile)/\(endpoint) is up"
        case .waitDrained(_, let profile, let endpoint): return "wait until \(profile)/\(endpoint) has no requests in flight"
        case .waitIdle(_, let profile, let writesOnly):
            return "wait until \(profile) has no \(writesOnly ? "write (unsafe-method request)" : "request or tunnel") in flight"
        case .checkEndpoint(_, let profile, let endpoint, let admin): return "check that \(profile)/\(endpoint) is \(admin)"
        case .dbReadOnly(let dsn, let on, _, _, let lease): return "database \(Self.redacted(dsn)) read-\(on ? "only" : "write")" + (lease.map { " (through the agent at \($0.agent), lease \(DurationText.format(.milliseconds($0.leaseMs))))" } ?? "")
        case .dbCopy(let from, let to, let method): return "copy database \(Self.redacted(from)) to \(Self.redacted(to)) (\(method))"
        case .dbPromote(let standby, _): return "promote standby \(Self.redacted(standby)) to primary"
        case .dbRun(let dsn, let file, _, _): return "run migration \(file) on \(Self.redacted(dsn))"
        case .dbRename(let dsn, let renames):
            return "rename on \(Self.redacted(dsn)): " + renames.map { "\($0.name) → \($0.value)" }.joined(separator: ", ")
        case .dbDrop(let dsn, let name, let force): return "drop database \(name) on \(Self.redacted(dsn))" + (force ? " (force)" : "")
        case .schemaCheck(let dsn, _, _, _): return "check the schema of \(Self.redacted(dsn))"
        case .dbAllowConnections(_, let database): return "allow connections to database \(database) again"
        case .flag(let on, let driver, let options):
            return "flag \(on ? "on" : "off") (\(driver): " + options.map { "\($0.name)=\($0.value)" }.joined(separator: " ") + ")"
        case .exec(let command, _, _): return "exec " + command.joined(separator: " ")
        case .confirm(let prompt): return "confirm: \(prompt)"
        case .sleep(let ms): return "sleep \(DurationText.format(.milliseconds(ms)))"
        case .wait(let command, _): return "wait until `\(command.joined(separator: " "))` exits 0"
        }
    }

    /// A connection string with its password masked, for anything printed or planned.
    public static func redacted(_ dsn: String) -> String {
        dsn.split(separator: " ").map { $0.hasPrefix("password=") ? "password=***" : String($0) }.joined(separator: " ")
    }

    /// Whether undoing this step after it *failed* is right. Restoring recorded state is (a half-done
    /// switch or fence is put back, a half-made copy dropped), but not an undo written for a step
    /// that succeeded: a user's `exec` undo, a migration's `undo_file` after the migration rolled
    /// back, or reverse renames after the rename transaction rolled back (they would swap the
    /// databases the wrong way).
    public var undoesAfterFailure: Bool {
        switch self {
        case .exec, .dbRun, .dbRename: return false
        case .switchTo, .setEndpoint, .pause, .resume, .maintenance, .readOnly, .waitHealthy, .waitDrained, .waitIdle, .checkEndpoint,
             .dbReadOnly, .dbCopy, .dbPromote, .dbDrop, .schemaCheck, .dbAllowConnections, .flag, .confirm, .sleep, .wait:
            return true
        }
    }

    /// The undo the plan shows before any state is read; the runner records the concrete one.
    public var plannedUndo: String {
        switch self {
        case .switchTo: return "switch back to the endpoint live before (force)"
        case .setEndpoint: return "restore the endpoint's previous state, priority and weight"
        case .pause(_, let profile): return "resume \(profile)"
        case .resume(_, let profile): return "pause \(profile) again, if it was paused"
        case .maintenance(_, let profile, _): return "maintenance \(profile) back to its mode before"
        case .readOnly(_, let profile, _): return "readonly \(profile) back to its mode before"
        case .waitHealthy, .waitDrained, .waitIdle, .checkEndpoint, .schemaCheck, .dbAllowConnections, .confirm, .sleep, .wait: return "nothing to undo"
        case .dbReadOnly(_, let on, _, _, _): return "database read-\(on ? "write" : "only") again"
        case .dbCopy(let from, let to, _): return "drop the copy \(Self.redacted(to)) (and give \(Self.redacted(from)) its connections back if a copy was cut short)"
        case .dbPromote: return "cannot be undone (a promoted standby cannot become a standby again)"
        case .dbRun(_, _, _, let undoFile):
            return undoFile.map { "run \($0)" } ?? "cannot be undone (no undo_file; dropping a copy the run made undoes it)"
        case .dbRename: return "the reverse renames, in reverse order"
        case .dbDrop: return "cannot be undone (the database is gone)"
        case .flag: return "the flag back to its value before"
        case .exec(_, let undo, _): return undo.map { "exec " + $0.joined(separator: " ") } ?? "nothing (the step gives no undo command)"
        }
    }
}

/// The concrete undo of one step, recorded in the journal before the step starts.
public enum RunbookUndo: Codable, Sendable, Equatable {
    /// The step changes nothing (`wait-*`, `sleep`, `confirm`, `schema-check`, an `exec` without `undo`).
    case nothing
    /// The step's effect cannot be reversed; the reason says why.
    case impossible(reason: String)
    /// Actions that restore the state read just before the step, run in order.
    case actions([StepAction])

    /// For plan, status and messages.
    public var summary: String {
        switch self {
        case .nothing: return "nothing to undo"
        case .impossible(let reason): return "cannot be undone: \(reason)"
        case .actions(let actions): return actions.map(\.summary).joined(separator: "; ")
        }
    }
}
