import CutoverControl
import CutoverCore
import Dispatch
import Foundation
import Glibc

/// Starts a whole proxy process: runtime, admin socket, signals; used by `cutover proxy` and `cutover demo`.
public enum ProxyServer {
    /// Runs until SIGTERM/SIGINT, then drains and exits 0. Throws only for start-up failures.
    public static func run(config: Config, configPath: String?, onStarted: @Sendable (ProxyRuntime) -> Void = { _ in }) throws -> Never {
        signal(SIGPIPE, SIG_IGN)
        // The same checks as `proxy --check`, before anything logs "listening on".
        try StartChecks.verify(config, file: configPath ?? "(command line)")
        StartChecks.prepareDirectories(config)
        let runtime = try ProxyRuntime(config: config, configPath: configPath)
        try runtime.start()
        var admin: AdminSocketServer?
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
            try runtime.startAdminHTTP(on: address)
        }
        let signals = installSignals(runtime: runtime, admin: admin)
        // Listeners, admin socket and signal handlers are in place: the proxy serves.
        SystemdNotify.send("READY=1\nSTATUS=serving \(config.listeners.count) listeners")
        onStarted(runtime)
        withExtendedLifetime((signals, admin)) {
            dispatchMain()
        }
    }

    private static func installSignals(runtime: ProxyRuntime, admin: AdminSocketServer?) -> [DispatchSourceSignal] {
        let queue = DispatchQueue(label: "cutover.signals")
        var sources: [DispatchSourceSignal] = []
        for number in [SIGHUP, SIGTERM, SIGINT] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler {
                if number == SIGHUP {
                    Log.info("SIGHUP: reloading \(runtime.configPath ?? "(no config file)")")
                    let answer = runtime.execute(line: "reload")
                    Log.info("reload: \(answer)")
                } else {
                    runtime.shutdown {
                        admin?.stop()
                        exit(0)
                    }
                }
            }
            source.activate()
            sources.append(source)
        }
        return sources
    }
}

extension AdminConfig {
    /// The session limits both admin listeners run with (read at start: a change takes a restart).
    var sessionLimits: AdminSessionLimits {
        .init(maxSessions: maxSessions, readTimeout: readTimeout)
    }
}
