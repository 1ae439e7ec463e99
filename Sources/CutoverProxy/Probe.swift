import CutoverCore
import Foundation
import Glibc

/// One run of an active health probe: connect (and ask, for `http`; and listen, for `agent`) or run
/// a command, within the probe's timeout, and say what happened in operator words.
///
/// - Important: blocks for up to the probe's timeout; call only on a probe thread, never on the
///   control queue or a worker.
enum Probe {
    /// What one run found: the result the health counters see and, from an agent that answered
    /// sanely, its whole reply (drain and weight are not health).
    struct Result: Sendable {
        let outcome: ProbeOutcome
        var agent: AgentReply? = nil
    }

    /// Runs `plan`'s probe once.
    static func run(_ plan: HealthProber.Plan) -> Result {
        let deadline = monotonicMilliseconds() + UInt64(max(1, plan.probe.timeout.milliseconds))
        switch plan.probe.type {
        case .tcp, .http: return Result(outcome: runSocket(plan, deadline: deadline))
        case .command: return Result(outcome: runCommand(plan, deadline: deadline))
        case .agent: return runAgent(plan, deadline: deadline)
        }
    }

    // MARK: - tcp and http

    private static func runSocket(_ plan: HealthProber.Plan, deadline: UInt64) -> ProbeOutcome {
        let probe = plan.probe
        let fd: Int32
        switch connect(plan, deadline: deadline) {
        case .success(let connected): fd = connected
        case .failure(let failed): return failed.outcome
        }
        defer { close(fd) }
        if !plan.preamble.isEmpty {
            // A few bytes on a fresh connection: the kernel takes them whole or the peer is gone.
            let sent = plan.preamble.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent == plan.preamble.count else { return .connectFailed("sending the PROXY header: \(connectWords(errno))") }
        }
        var stream = ProbeStream(fd: fd)
        defer { stream.close() }
        if let tls = plan.tls {
            switch stream.shakeHands(tls, until: deadline) {
            case .none: break
            case .some(.timedOut): return .timedOut(after: probe.timeout, "in the TLS handshake")
            case .some(.failed(let reason)): return .connectFailed("TLS handshake failed: \(reason)")
            }
        }
        if probe.type == .tcp { return .connected(to: plan.address) }

        let timedOut = ProbeOutcome.timedOut(after: probe.timeout, "on \(probe.path)")
        let request = HTTPProbe.request(probe, address: plan.address)
        var sent = 0
        while sent < request.count {
            let count = request[sent...].withUnsafeBytes { stream.send($0) }
            if count > 0 {
                sent += count
            } else if count == -1 {
                guard wait(fd, for: stream.waitsForWrite ? Int16(POLLOUT) : Int16(POLLIN), until: deadline) else { return timedOut }
            } else {
                return .closedEarly(path: probe.path, reset: true)
            }
        }

        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16_384)
        while true {
            if !stream.hasBufferedBytes {
                guard wait(fd, for: Int16(POLLIN), until: deadline) else { return timedOut }
            }
            let count = buffer.withUnsafeMutableBytes { stream.receive($0) }
            if count > 0 {
                received.append(contentsOf: buffer[0..<count])
                // Past the most worth reading, decide on what is here.
                let enough = received.count >= HTTPProbe.maxResponseBytes
                if let outcome = HTTPProbe.evaluate(received, probe: probe, closed: enough) { return outcome }
            } else if count == 0 {
                return HTTPProbe.evaluate(received, probe: probe, closed: true) ?? .closedEarly(path: probe.path, reset: false)
            } else if count == -2 {
                return HTTPProbe.evaluate(received, probe: probe, closed: true, reset: true) ?? .closedEarly(path: probe.path, reset: true)
            }
        }
    }

    /// A failed connect, as the probe result it is.
    private struct ConnectFailure: Error {
        let outcome: ProbeOutcome
    }

    /// Connects to `plan`'s address by the deadline; the descriptor is the caller's to close.
    private static func connect(_ plan: HealthProber.Plan, deadline: UInt64) -> Swift.Result<Int32, ConnectFailure> {
        let fd: Int32
        do {
            fd = try Socket.startConnect(to: plan.socketAddress)
        } catch let failure as Socket.Failure {
            return .failure(ConnectFailure(outcome: .connectFailed(connectWords(failure.code))))
        } catch {
            return .failure(ConnectFailure(outcome: .connectFailed("failed: \(error)")))
        }
        guard wait(fd, for: Int16(POLLOUT), until: deadline) else {
            close(fd)
            return .failure(ConnectFailure(outcome: .timedOut(after: plan.probe.timeout, "connecting")))
        }
        let connectError = Socket.pendingError(fd)
        guard connectError == 0 else {
            close(fd)
            return .failure(ConnectFailure(outcome: .connectFailed(connectWords(connectError))))
        }
        return .success(fd)
    }

    // MARK: - agent

    /// Connects to the agent's port and reads its one line (to a line end, or to the close), then
    /// parses it (`AgentReply`). Plain TCP even when the endpoint speaks TLS: the agent is a
    /// separate listener of the backend's, as HAProxy's `agent-port`.
    private static func runAgent(_ plan: HealthProber.Plan, deadline: UInt64) -> Result {
        let fd: Int32
        switch connect(plan, deadline: deadline) {
        case .success(let connected): fd = connected
        case .failure(let failed): return Result(outcome: failed.outcome)
        }
        defer { close(fd) }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: AgentReply.maxBytes)
        while !received.contains(UInt8(ascii: "\n")) && received.count < AgentReply.maxBytes {
            guard wait(fd, for: Int16(POLLIN), until: deadline) else {
                return Result(outcome: .timedOut(after: plan.probe.timeout, "waiting for the agent's line"))
            }
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, AgentReply.maxBytes - received.count, Int32(MSG_DONTWAIT)) }
            if count > 0 {
                received.append(contentsOf: buffer[0..<count])
            } else if count == 0 {
                break  // the agent said its line and closed, without a line end
            } else if errno != EAGAIN && errno != EINTR {
                return Result(outcome: .connectFailed(connectWords(errno)))
            }
        }
        let line = String(decoding: received.prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
        switch AgentReply.parse(line) {
        case .success(let reply): return Result(outcome: reply.outcome, agent: reply)
        case .failure(let error): return Result(outcome: error.outcome)
        }
    }

    /// Waits until `fd` is ready for `events`; false when the deadline passed first.
    static func wait(_ fd: Int32, for events: Int16, until deadline: UInt64) -> Bool {
        while true {
            let now = monotonicMilliseconds()
            guard now < deadline else { return false }
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let ready = poll(&entry, 1, Int32(min(deadline - now, UInt64(Int32.max))))
            if ready > 0 { return true }
            if ready < 0 && errno != EINTR { return true }  // let the next call report the error
        }
    }

    /// A connect error as the words after `probe: connect`.
    static func connectWords(_ code: Int32) -> String {
        switch code {
        case ECONNREFUSED: return "refused"
        case ECONNRESET: return "reset"
        case ETIMEDOUT: return "timed out"
        case EHOSTUNREACH: return "host unreachable"
        case ENETUNREACH: return "network unreachable"
        case EADDRNOTAVAIL: return "address not available"
        default: return "failed: \(String(cString: strerror(code)))"
        }
    }

    // MARK: - command

    /// Runs the probe's command in its own process group with the endpoint in its environment;
    /// exit 0 is healthy, and at the deadline the whole group is killed.
    private static func runCommand(_ plan: HealthProber.Plan, deadline: UInt64) -> ProbeOutcome {
        let probe = plan.probe
        guard let executable = probe.command.first else { return .commandNotStarted("(none)", reason: "no command configured") }
        var environment = ProcessInfo.processInfo.environment
        environment["CUTOVER_ENDPOINT_HOST"] = plan.address.host
        environment["CUTOVER_ENDPOINT_PORT"] = String(plan.address.port)
        environment["CUTOVER_ENDPOINT_NAME"] = plan.endpoint
        environment["CUTOVER_PROFILE"] = plan.profile

        let arguments: [UnsafeMutablePointer<CChar>?] = probe.command.map { strdup($0) } + [nil]
        let variables: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in arguments { free(pointer) }
            for pointer in variables { free(pointer) }
        }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Own process group, so a timeout kills the command's children too; the signals the proxy
        // ignores or blocks (SIGPIPE, SIGTERM, SIGHUP) are restored to their defaults in the child.
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        posix_spawnattr_setpgroup(&attributes, 0)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGTERM, SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var unblocked = sigset_t()
        sigemptyset(&unblocked)
        posix_spawnattr_setsigmask(&attributes, &unblocked)

        var pid: pid_t = 0
        let spawned = posix_spawnp(&pid, executable, &actions, &attributes, arguments, variables)
        guard spawned == 0 else { return .commandNotStarted(executable, reason: String(cString: strerror(spawned))) }

        var status: Int32 = 0
        var pause: UInt32 = 1_000
        while true {
            let reaped = waitpid(pid, &status, WNOHANG)
            if reaped == pid { break }
            if reaped < 0 && errno != EINTR { return .commandNotStarted(executable, reason: "lost track of process \(pid)") }
            if monotonicMilliseconds() >= deadline {
                kill(-pid, SIGKILL)
                kill(pid, SIGKILL)
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                return .commandTimedOut(after: probe.timeout)
            }
            usleep(pause)
            pause = min(pause * 2, 20_000)  // quick commands are seen at once, slow ones cost little
        }
        let signal = status & 0x7F
        return signal == 0 ? .commandExited((status >> 8) & 0xFF) : .commandKilled(signal: signal)
    }
}
