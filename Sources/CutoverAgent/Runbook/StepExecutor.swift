import CutoverCore
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Does, checks and undoes one step kind against the real world: the proxy over its admin socket,
/// PostgreSQL over libpq, flag drivers, programs. The runner decides *when*; this says *how*.
///
/// Blocking throughout: run it on the command's own thread, never on a proxy queue.
public struct StepExecutor: Sendable {
    /// `--yes`: `confirm` steps pass without asking.
    public var assumeYes: Bool
    /// Where `confirm` asks and reads (a terminal, or the refusal when it is not one).
    public var isInteractive: Bool

    public init(assumeYes: Bool, isInteractive: Bool = isatty(0) == 1) {
        self.assumeYes = assumeYes
        self.isInteractive = isInteractive
    }

    static func timeout(_ step: RunbookStep) -> Duration { .milliseconds(step.timeoutMs ?? 3_600_000) }

    // MARK: undo, read from the state just before the step

    /// The concrete undo of `step`, computed from the state read now (before the step runs).
    public func undo(for step: RunbookStep) throws(StepFailure) -> RunbookUndo {
        switch step.action {
        case .switchTo(let socket, let profile, _, _, _, _):
            let before = try ProxyAdminSession(socket: socket).profile(profile)
            guard let previous = before.live.first else { return .nothing }
            return .actions([.switchTo(socket: socket, profile: profile, endpoint: previous, wait: false, force: true)])
        case .setEndpoint(let socket, let profile, let endpoint, _, _, _):
            let before = try ProxyAdminSession(socket: socket).endpoint(profile: profile, endpoint)
            let state = before.state == "draining" ? "drain" : before.state
            return .actions([.setEndpoint(socket: socket, profile: profile, endpoint: endpoint, state: state, priority: before.priority, weight: before.weight)])
        case .pause(let socket, let profile):
            let before = try ProxyAdminSession(socket: socket).profile(profile)
            return before.paused ? .nothing : .actions([.resume(socket: socket, profile: profile)])
        case .resume(let socket, let profile):
            let before = try ProxyAdminSession(socket: socket).profile(profile)
            return before.paused ? .actions([.pause(socket: socket, profile: profile)]) : .nothing
        case .maintenance(let socket, let profile, let on):
            let before = try ProxyAdminSession(socket: socket).profile(profile)
            return before.maintenance == on ? .nothing : .actions([.maintenance(socket: socket, profile: profile, on: before.maintenance)])
        case .readOnly(let socket, let profile, let mode):
            let before = try ProxyAdminSession(socket: socket).profile(profile).readonlyGate
            return before == mode ? .nothing : .actions([.readOnly(socket: socket, profile: profile, mode: before)])
        case .dbReadOnly(let dsn, let on, let graceMs, let control, let lease):
            let wasReadOnly = try Self.fenceMode(dsn, control, lease) == "read-only"
            return wasReadOnly == on ? .nothing : .actions([.dbReadOnly(dsn: dsn, on: !on, graceMs: graceMs, controlDatabase: control, lease: lease)])
        case .flag(let on, let driver, let options):
            let before: String
            do { before = try Self.flag(driver, options, step).status().state } catch { throw StepFailure("flag status: \(error)") }
            if before == (on ? "on" : "off") { return .nothing }
            return .actions([.flag(on: !on, driver: driver, options: options)])
        case .exec(_, let undo, let env):
            return undo.map { .actions([.exec(command: $0, undo: nil, env: env)]) } ?? .nothing
        case .dbCopy, .dbPromote, .dbRun, .dbRename, .dbDrop, .schemaCheck:
            return try DatabaseSteps.undo(for: step.action)
        case .waitHealthy, .waitDrained, .waitIdle, .checkEndpoint, .dbAllowConnections, .confirm, .sleep, .wait:
            return .nothing
        }
    }

    // MARK: perform

    /// Does `action` within `timeout`; returns a one-line detail for the journal.
    public func perform(_ action: StepAction, timeout: Duration) throws(StepFailure) -> String {
        let deadline = ContinuousClock.now + timeout
        switch action {
        case .switchTo(let socket, let profile, let endpoint, let wait, let force, let guardMs):
            let guarded = guardMs.map { " --guard \(DurationText.format(.milliseconds($0))) --wait-guard" } ?? ""
            let command = "switch \(profile) \(endpoint)" + (force ? " --force" : "") + (wait ? " --wait" : "") + guarded
            return try ProxyAdminSession(socket: socket).change(command, timeout: timeout)
        case .setEndpoint(let socket, let profile, let endpoint, let state, let priority, let weight):
            let words = ["set endpoint \(profile)/\(endpoint)", state, priority.map { "priority \($0)" }, weight.map { "weight \($0)" }]
            return try ProxyAdminSession(socket: socket).change(words.compactMap { $0 }.joined(separator: " "), timeout: timeout)
        case .pause(let socket, let profile):
            return try ProxyAdminSession(socket: socket).change("pause \(profile)", timeout: timeout)
        case .resume(let socket, let profile):
            return try ProxyAdminSession(socket: socket).change("resume \(profile)", timeout: timeout)
        case .maintenance(let socket, let profile, let on):
            return try ProxyAdminSession(socket: socket).change("maintenance \(profile) \(on ? "on" : "off")", timeout: timeout)
        case .readOnly(let socket, let profile, let mode):
            return try ProxyAdminSession(socket: socket).change("readonly \(profile) \(mode.rawValue)", timeout: timeout)
        case .waitHealthy(let socket, let profile, let endpoint):
            return try poll("\(profile)/\(endpoint) to be up", deadline: deadline, interval: .milliseconds(200)) { () throws(StepFailure) in
                let e = try ProxyAdminSession(socket: socket).endpoint(profile: profile, endpoint)
                return e.health == "up" ? "\(profile)/\(endpoint) is up" : nil
            }
        case .waitDrained(let socket, let profile, let endpoint):
            return try poll("\(profile)/\(endpoint) to drain", deadline: deadline, interval: .milliseconds(200)) { () throws(StepFailure) in
                let e = try ProxyAdminSession(socket: socket).endpoint(profile: profile, endpoint)
                return !e.live && e.inFlight == 0 ? "\(profile)/\(endpoint) is drained (not live, nothing in flight)" : nil
            }
        case .waitIdle(let socket, let profile, let writesOnly):
            let what = writesOnly ? "writes" : "requests"
            return try poll("\(profile) to have no \(what) in flight", deadline: deadline, interval: .milliseconds(50)) { () throws(StepFailure) in
                let p = try ProxyAdminSession(socket: socket).profile(profile)
                return (writesOnly ? p.writesInFlight : p.inFlight) == 0 ? "\(profile) has no \(what) in flight" : nil
            }
        case .checkEndpoint(let socket, let profile, let endpoint, let admin):
            return try Self.checkEndpoint(socket: socket, profile: profile, endpoint: endpoint, admin: admin)
        case .dbReadOnly(let dsn, let on, let graceMs, let control, let lease):
            let report: FenceReport
            if let lease {
                let fence = AgentFence(target: dsn, controlDatabase: control, lease: lease)
                report = on ? try fence.on(graceMs: graceMs, timeout: timeout) : try fence.off(timeout: timeout)
            } else {
                report = try Self.database { () throws(DatabaseError) in
                    let fence = try Self.fence(dsn, control)
                    return on ? try fence.on(grace: .milliseconds(graceMs)) : try fence.off()
                }
            }
            return "\(report.action) \(report.database): " + (report.changed ? "changed" : "already so") + (report.proof.isEmpty ? "" : "; \(report.proof)")
        case .flag(let on, let driver, let options):
            let step = RunbookStep(index: 0, action: action, timeoutMs: timeout.milliseconds)
            let flag = try Self.flag(driver, options, step)
            do {
                return (on ? try flag.on() : try flag.off()).text
            } catch {
                throw StepFailure("\(error)")
            }
        case .exec(let command, _, let env):
            let status = try Self.runProgram(command, env: env, timeout: timeout)
            guard status == 0 else { throw StepFailure("`\(command.joined(separator: " "))` exited with status \(status)") }
            return "`\(command.joined(separator: " "))` exited 0"
        case .confirm(let prompt):
            return try confirm(prompt)
        case .sleep(let ms):
            Thread.sleep(forTimeInterval: Duration.milliseconds(ms).seconds)
            return "slept \(DurationText.format(.milliseconds(ms)))"
        case .wait(let command, let intervalMs):
            return try poll("`\(command.joined(separator: " "))` to exit 0", deadline: deadline, interval: .milliseconds(intervalMs)) { () throws(StepFailure) in
                let left = deadline - ContinuousClock.now
                return try Self.runProgram(command, env: [], timeout: max(left, .milliseconds(100))) == 0 ? "`\(command.joined(separator: " "))` exited 0" : nil
            }
        case .dbCopy, .dbPromote, .dbRun, .dbRename, .dbDrop, .schemaCheck:
            return try DatabaseSteps.perform(action)
        case .dbAllowConnections(let dsn, let database):
            return try DatabaseSteps.allowConnections(dsn: dsn, database: database)
        }
    }

    // MARK: verify (resume)

    /// Whether `action`'s effect is already in place, for `resume` of an interrupted step;
    /// `nil` when it cannot be told (programs, sleeps): the step is run again.
    public func isApplied(_ action: StepAction) throws(StepFailure) -> Bool? {
        switch action {
        case .switchTo(let socket, let profile, let endpoint, _, _, _):
            return try ProxyAdminSession(socket: socket).profile(profile).live == [endpoint]
        case .pause(let socket, let profile):
            return try ProxyAdminSession(socket: socket).profile(profile).paused
        case .resume(let socket, let profile):
            return try !ProxyAdminSession(socket: socket).profile(profile).paused
        case .maintenance(let socket, let profile, let on):
            return try ProxyAdminSession(socket: socket).profile(profile).maintenance == on
        case .readOnly(let socket, let profile, let mode):
            return try ProxyAdminSession(socket: socket).profile(profile).readonlyGate == mode
        case .dbReadOnly(let dsn, let on, _, let control, let lease):
            return (try Self.fenceMode(dsn, control, lease) == "read-only") == on
        case .dbCopy, .dbPromote, .dbRun, .dbRename, .dbDrop, .schemaCheck:
            return try DatabaseSteps.isApplied(action)
        case .setEndpoint, .waitHealthy, .waitDrained, .waitIdle, .checkEndpoint, .dbAllowConnections, .flag, .exec, .confirm, .sleep, .wait:
            // Re-running is safe: these set a value, wait for a condition or ask again.
            return nil
        }
    }

    // MARK: plan checks

    /// What `plan` checks for `step` without changing anything; each failure one line.
    public func preflight(_ step: RunbookStep) -> [String] {
        func check(_ body: () throws(StepFailure) -> Void) -> [String] {
            do { try body(); return [] } catch { return [error.description] }
        }
        switch step.action {
        case .switchTo(let socket, let profile, let endpoint, _, _, _), .waitHealthy(let socket, let profile, let endpoint),
             .waitDrained(let socket, let profile, let endpoint), .setEndpoint(let socket, let profile, let endpoint, _, _, _):
            return check { () throws(StepFailure) in _ = try ProxyAdminSession(socket: socket).endpoint(profile: profile, endpoint) }
        case .checkEndpoint(let socket, let profile, let endpoint, let admin):
            return check { () throws(StepFailure) in _ = try Self.checkEndpoint(socket: socket, profile: profile, endpoint: endpoint, admin: admin) }
        case .pause(let socket, let profile), .resume(let socket, let profile), .maintenance(let socket, let profile, _),
             .readOnly(let socket, let profile, _), .waitIdle(let socket, let profile, _):
            return check { () throws(StepFailure) in _ = try ProxyAdminSession(socket: socket).profile(profile) }
        case .dbReadOnly(let dsn, let on, _, let control, let lease):
            return check { () throws(StepFailure) in
                if let lease {
                    // The agent holds the credentials: that it can read the mode is what plan can prove.
                    _ = try AgentFence(target: dsn, controlDatabase: control, lease: lease).mode()
                } else {
                    try Self.database { () throws(DatabaseError) in try Self.fence(dsn, control).check(forFence: on) }
                }
            }
        case .flag(_, let driver, let options):
            return check { () throws(StepFailure) in
                do { _ = try Self.flag(driver, options, step).status() } catch { throw StepFailure("flag status: \(error)") }
            }
        case .exec(let command, let undo, _):
            return ([command] + (undo.map { [$0] } ?? [])).compactMap { Self.findProgram($0[0]) == nil ? "program \"\($0[0])\" not found on PATH" : nil }
        case .wait(let command, _):
            return Self.findProgram(command[0]) == nil ? ["program \"\(command[0])\" not found on PATH"] : []
        case .dbCopy, .dbPromote, .dbRun, .dbRename, .dbDrop, .schemaCheck:
            return DatabaseSteps.preflight(step.action)
        case .confirm, .sleep, .dbAllowConnections:
            return []
        }
    }

    // MARK: helpers

    /// The endpoint's admin state is `admin`, or a failure naming what it is.
    static func checkEndpoint(socket: String, profile: String, endpoint: String, admin: String) throws(StepFailure) -> String {
        let found = try ProxyAdminSession(socket: socket).endpoint(profile: profile, endpoint)
        guard found.state == admin else {
            throw StepFailure("\(profile)/\(endpoint) is \(found.state), not \(admin)")
        }
        return "\(profile)/\(endpoint) is \(admin)"
    }

    private func poll(_ what: String, deadline: ContinuousClock.Instant, interval: Duration,
                      _ check: () throws(StepFailure) -> String?) throws(StepFailure) -> String {
        var lastError: StepFailure?
        while true {
            do {
                if let done = try check() { return done }
                lastError = nil
            } catch {
                lastError = error
            }
            guard ContinuousClock.now + interval < deadline else {
                throw StepFailure("timed out waiting for \(what)" + (lastError.map { ": \($0)" } ?? ""))
            }
            Thread.sleep(forTimeInterval: interval.seconds)
        }
    }

    private func confirm(_ prompt: String) throws(StepFailure) -> String {
        if assumeYes { return "confirmed by --yes" }
        guard isInteractive else {
            throw StepFailure("confirm \"\(prompt)\": standard input is not a terminal; run with --yes to confirm without asking")
        }
        FileHandle.standardOutput.write(Data("\(prompt) Type yes to continue: ".utf8))
        guard let answer = readLine(strippingNewline: true) else { throw StepFailure("confirm \"\(prompt)\": no answer (end of input)") }
        guard answer.trimmingCharacters(in: .whitespaces) == "yes" else { throw StepFailure("confirm \"\(prompt)\": answered \"\(answer)\", not yes") }
        return "confirmed by a person"
    }

    /// `read-only` or `read-write`, read through the agent when the fence is leased.
    static func fenceMode(_ dsn: String, _ control: String?, _ lease: FenceLease?) throws(StepFailure) -> String {
        if let lease { return try AgentFence(target: dsn, controlDatabase: control, lease: lease).mode() }
        return try database { () throws(DatabaseError) in try fence(dsn, control).status().mode }
    }

    static func fence(_ dsn: String, _ control: String?) throws(DatabaseError) -> ReadOnlyFence {
        try ReadOnlyFence(target: try ConnectionString(dsn), controlDatabase: control ?? "postgres")
    }

    static func database<T>(_ body: () throws(DatabaseError) -> T) throws(StepFailure) -> T {
        do { return try body() } catch { throw StepFailure("\(error)") }
    }

    static func flag(_ driver: String, _ options: [NamedValue], _ step: RunbookStep) throws(StepFailure) -> FlagDriver {
        do {
            return try FlagDriverOptions.make { name in
                if name == "--driver" { return driver }
                if name == "--timeout" { return DurationText.format(timeout(step)) }
                return options.first { "--" + $0.name == name }?.value
            }
        } catch {
            throw StepFailure("flag: \(error)")
        }
    }

    /// `name` as found on PATH (or as given when it contains a slash), `nil` when absent.
    static func findProgram(_ name: String) -> String? {
        if name.contains("/") { return access(name, X_OK) == 0 ? name : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(name)" }.first { access($0, X_OK) == 0 }
    }

    /// Runs `argv` with the runner's stdout and stderr; kills it (TERM, then KILL) at `timeout`.
    static func runProgram(_ argv: [String], env: [NamedValue], timeout: Duration) throws(StepFailure) -> Int32 {
        guard let program = findProgram(argv[0]) else { throw StepFailure("program \"\(argv[0])\" not found on PATH") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = Array(argv.dropFirst())
        var environment = ProcessInfo.processInfo.environment
        for pair in env { environment[pair.name] = pair.value }
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { throw StepFailure("cannot start \(program): \(error)") }
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning {
            process.terminate()
            let grace = ContinuousClock.now + .seconds(2)
            while process.isRunning && ContinuousClock.now < grace { Thread.sleep(forTimeInterval: 0.02) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            throw StepFailure("`\(argv.joined(separator: " "))` did not finish within \(DurationText.format(timeout)); killed")
        }
        return process.terminationStatus
    }
}
