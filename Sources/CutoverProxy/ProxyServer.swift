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
        // Log lines wait for their writer thread: a failed start must not exit before they are out.
        defer { Log.flush() }
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
                        runtime.accessLog?.flushWriter()
                        Log.flush()
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
