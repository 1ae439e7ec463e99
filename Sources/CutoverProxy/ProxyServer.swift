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
        let runtime = try ProxyRuntime(config: config, configPath: configPath)
        try runtime.start()
        var admin: AdminSocketServer?
        if let path = config.admin.socket {
            let server = AdminSocketServer(path: path, mode: config.admin.socketMode, group: config.admin.socketGroup) { line in
                runtime.execute(line: line)
            }
            try server.start()
            Log.info("admin socket \(path)")
            admin = server
        }
        if let address = config.admin.http {
            try runtime.startAdminHTTP(on: address)
        }
        let signals = installSignals(runtime: runtime, admin: admin)
        onStarted(runtime)
        withExtendedLifetime((signals, admin)) {
            dispatchMain()
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
