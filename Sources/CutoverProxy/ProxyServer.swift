import CutoverControl
import CutoverCore
import Dispatch
import Foundation
import Glibc

/// Starts a whole proxy process: runtime, admin socket, signals; used by `cutover proxy` and `cutover demo`.
public enum ProxyServer {
    /// Runs until SIGTERM/SIGINT (or until a successor took over), then drains and exits 0.
    /// Throws only for start-up failures.
    ///
    /// - Parameter takeover: take the listening sockets, the admin socket and the admin HTTP
    ///   listener over from the proxy running behind `config.admin.socket` (see `Handover`);
    ///   the config was validated before this is called, so a broken one never takes traffic.
    public static func run(config: Config, configPath: String?, takeover: Bool = false, onStarted: @Sendable (ProxyRuntime) -> Void = { _ in }) throws -> Never {
        signal(SIGPIPE, SIG_IGN)
        // Signal sources exist before any socket does: a SIGTERM that arrives while the proxy starts
        // (a unit stopped at once, a test's cleanup) is kept and acted on once it serves, instead of
        // killing a process that already listens with the default action.
        let signals = SignalRouter(numbers: [SIGHUP, SIGTERM, SIGINT, SIGUSR2])
        // The same checks as `proxy --check`, before anything logs "listening on" (and, in a
        // takeover, before the running proxy is asked for anything).
        try StartChecks.verify(config, file: configPath ?? "(command line)")
        StartChecks.prepareDirectories(config)
        // Log lines wait for their writer thread: a failed start must not exit before they are out.
        defer { Log.flush() }
        var predecessor: HandoverClient?
        if takeover {
            guard let socket = config.admin.socket else {
                throw Handover.Failure(description: "--takeover finds the running proxy through admin.socket; the config has none")
            }
            predecessor = try HandoverClient(adminSocket: socket)
            Log.info("takeover: pid \(predecessor!.offer.pid) (cutover \(predecessor!.offer.version)) offered \(predecessor!.sockets.count) listening sockets")
        }
        let runtime: ProxyRuntime
        var admin: AdminSocketServer?
        var handover: HandoverServer?
        do {
            // The state file was written by the predecessor just before its offer: it is read here.
            runtime = try ProxyRuntime(config: config, configPath: configPath)
            var inherited: [Int: Int32] = [:]
            var origin = "taken over"
            if let predecessor {
                for (listener, offered) in predecessor.offer.listenerMatches(config) { inherited[listener] = predecessor.sockets[offered] }
            } else {
                inherited = SocketActivation.listeners(for: config)
                origin = "socket-activated"
            }
            try runtime.start(inherited: inherited, inheritedFrom: origin)
            // The predecessor's admin HTTP socket, if this config still listens there.
            let adoptedHTTP = predecessor.flatMap { client in
                config.admin.http.flatMap { client.offer.adminHTTPMatch($0) }.map { client.sockets[$0] }
            }
            if let path = config.admin.socket {
                let server = AdminSocketServer(
                    path: path, mode: config.admin.socketMode, group: config.admin.socketGroup, limits: config.admin.sessionLimits,
                    streamer: { line in runtime.stream(line: line) }
                ) { line in
                    runtime.execute(line: line)
                }
                try server.start()
                Log.info("admin socket \(path)")
                admin = server
            } else {
                Log.warning("no admin socket (admin.socket): `cutover ctl` cannot switch, pause or reload this proxy; SIGHUP still reloads")
            }
            if let address = config.admin.http {
                try runtime.startAdminHTTP(on: address, adopting: adoptedHTTP)
            }
            if let path = config.admin.socket {
                let server = admin
                handover = try HandoverServer(adminSocket: path, runtime: runtime) {
                    server?.stop()
                    runtime.drainForSuccessor {
                        flushLogs(runtime)
                        exit(0)
                    }
                }
            }
            if let predecessor {
                // Sockets the new config does not use close here; the predecessor closes its own copies.
                let used = Set(inherited.values).union(adoptedHTTP.map { [$0] } ?? [])
                for socket in predecessor.sockets where !used.contains(socket) { close(socket) }
                // systemd follows this process before the predecessor stops (the unit says NotifyAccess=all).
                SystemdNotify.send("MAINPID=\(getpid())\nREADY=1\nSTATUS=serving \(config.listeners.count) listeners (took over)")
                predecessor.ready()
                runtime.tookOver(fromGeneration: predecessor.offer.generation ?? 1)
                Log.info("takeover: serving; pid \(predecessor.offer.pid) stopped accepting and drains")
            }
        } catch {
            predecessor?.abandon()
            throw error
        }
        signals.attach(signalHandler(runtime: runtime, admin: admin, handover: handover)) { number in
            Log.info("acting on signal \(number), received while starting")
        }
        // Listeners, admin socket and signal handlers are in place: the proxy serves.
        if predecessor == nil { SystemdNotify.send("READY=1\nSTATUS=serving \(config.listeners.count) listeners") }
        onStarted(runtime)
        withExtendedLifetime((signals, admin, handover)) {
            SignalRouter.parkMainThread()
        }
    }

    /// Reads every certificate, key and CA bundle the config names, as a start would, and throws
    /// the first that fails (`cutover proxy --check`).
    public static func checkTLSFiles(config: Config, configPath: String?) throws {
        let file = configPath ?? "(command line)"
        let stats = TLSStats()
        for (index, listener) in config.listeners.enumerated() {
            _ = try ListenerTransport.load(listener, index: index, file: file, timeouts: config.timeouts, stats: stats)
        }
        for (p, profile) in config.profiles.enumerated() {
            for (e, endpoint) in profile.endpoints.enumerated() {
                _ = try TLSClientContext.load(endpoint, key: "profiles[\(p)].endpoints[\(e)].tls", file: file, timeouts: config.timeouts, stats: stats)
            }
        }
    }

    /// Writes every queued log line before the process exits (the writers' threads die with it).
    private static func flushLogs(_ runtime: ProxyRuntime) {
        runtime.accessLog?.flushWriter()
        Log.flush()
    }

    private static func signalHandler(runtime: ProxyRuntime, admin: AdminSocketServer?, handover: HandoverServer?) -> @Sendable (Int32) -> Void {
        { number in
            if number == SIGUSR2 {
                startSuccessor()
            } else if number == SIGHUP {
                Log.info("SIGHUP: reloading \(runtime.configPath ?? "(no config file)")")
                let answer = runtime.execute(line: "reload")
                Log.info("reload: \(answer)")
            } else {
                runtime.shutdown {
                    admin?.stop()
                    handover?.stop()
                    flushLogs(runtime)
                    exit(0)
                }
            }
        }
    }

    /// SIGUSR2: start the binary at this process's own path (replaced by a new version, typically)
    /// with the same arguments and `--takeover`, so that the successor runs in the same service
    /// (a systemd unit's cgroup): `systemctl kill --kill-who=main --signal=SIGUSR2 cutover`.
    /// A successor that fails exits with its reason in the log; this process keeps serving.
    private static func startSuccessor() {
        var arguments = Array(CommandLine.arguments.dropFirst())
        if !arguments.contains("--takeover") { arguments.append("--takeover") }
        let path = CommandLine.arguments[0].hasPrefix("/")
            ? CommandLine.arguments[0]
            : FileManager.default.currentDirectoryPath + "/" + CommandLine.arguments[0]
        let successor = Process()
        successor.executableURL = URL(fileURLWithPath: path)
        successor.arguments = arguments
        do {
            try successor.run()
            Log.info("SIGUSR2: started \(path) \(arguments.joined(separator: " ")) (pid \(successor.processIdentifier)) to take over")
        } catch {
            Log.error("SIGUSR2: could not start \(path) to take over: \(error); still serving")
        }
    }
}

extension AdminConfig {
    /// The session limits both admin listeners run with (read at start: a change takes a restart).
    var sessionLimits: AdminSessionLimits {
        .init(maxSessions: maxSessions, readTimeout: readTimeout)
    }
}
