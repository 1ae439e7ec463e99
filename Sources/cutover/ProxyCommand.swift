import CutoverControl
import CutoverCore
import CutoverProxy
import Foundation

/// `cutover proxy`: run the reverse proxy from a config file or from flags.
enum ProxyCommand {
    static let subcommand = Subcommand(
        name: "proxy",
        summary: "run the reverse proxy (from --config FILE, or --listen/--endpoint flags)",
        help: """
            Usage: cutover proxy --config FILE [--admin-socket PATH] [--workers N] [--access-log stderr|off|PATH] [--check] [--takeover]
                   cutover proxy --listen HOST:PORT --endpoint NAME=HOST:PORT [--endpoint NAME=HOST:PORT ...]
                                 [--mode http|tcp] [--admin-socket PATH] [--workers N] [--access-log stderr|off|PATH] [--check]

            Runs the proxy in the foreground until SIGTERM or SIGINT, then stops accepting, lets
            in-flight requests finish (timeouts.shutdown, default 30s) and exits 0. SIGHUP re-reads
            the config file; a config that fails validation is refused and the running one kept.

            Options:
              --config FILE         JSON config (every key: docs/configuration.md). A bad config
                                    is refused before anything starts: file, key path and reason.
              --listen HOST:PORT    without a file: the address to accept on (port 0 = any free port)
              --endpoint NAME=HOST:PORT
                                    without a file: an endpoint of the profile "default"; the first
                                    is online, the others offline (standby for `switch`). Repeatable.
              --mode http|tcp       without a file: HTTP/1.1 reverse proxy (default) or raw TCP
              --admin-socket PATH   admin Unix socket for `cutover ctl` (with --config: overrides
                                    admin.socket; without: default $CUTOVER_SOCKET, else
                                    \(CtlCommand.defaultSocket), where `cutover ctl` looks)
              --workers N           worker queues (default: one per CPU it may run on; overrides the config)
              --access-log DEST     stderr (default), off, or a file path (overrides the config)
              --check               run every check start runs short of binding (config, endpoint
                                    names resolve, socket_group exists, state file readable,
                                    directories writable, TLS certificates, keys and CA bundles
                                    load) and exit (0 valid, 1 invalid)
              --takeover            upgrade without a gap: take the listening sockets, the admin
                                    socket and the admin HTTP listener over from the proxy running
                                    behind admin.socket, then that one drains and exits. A config
                                    that does not validate is refused first; the old one keeps
                                    serving (docs/self-upgrade.md)
            """,
        run: run)

    static func run(_ words: [String]) throws -> Int32 {
        let args = try Arguments(words, valued: ["--config", "--listen", "--endpoint", "--mode", "--admin-socket", "--workers", "--access-log"])
        try args.rejectUnknown(flags: ["--check", "--takeover"])
        guard args.positionals.isEmpty else { throw UsageError("unexpected argument \(args.positionals[0])") }
        var config: Config
        let path = args.value("--config")
        if let path {
            guard args.value("--listen") == nil, args.values("--endpoint").isEmpty, args.value("--mode") == nil else {
                throw UsageError("--config cannot be combined with --listen, --endpoint or --mode")
            }
            config = try ConfigFile.load(path: path)
        } else {
            config = try configFromFlags(args)
            if args.value("--admin-socket") == nil { config.admin.socket = quickModeSocket() }
        }
        if let socket = args.value("--admin-socket") { config.admin.socket = socket }
        if let workers = args.value("--workers") {
            guard let n = Int(workers), n >= 1, n <= 256 else { throw UsageError("--workers: \"\(workers)\" is not a number from 1 to 256") }
            config.workers = n
        }
        if let accessLog = args.value("--access-log") { config.accessLog = accessLog }
        try ConfigLoader.validate(config, file: path ?? "(command line)")
        if args.has("--check") {
            try StartChecks.verify(config, file: path ?? "(command line)")
            try ProxyServer.checkTLSFiles(config: config, configPath: path)
            print("\(path ?? "(command line)"): valid (\(config.listeners.count) listeners, \(config.profiles.count) profiles)")
            return 0
        }
        try ProxyServer.run(config: config, configPath: path, takeover: args.has("--takeover"))
    }

    /// Quick mode's admin socket when none is given: the one `cutover ctl` uses by default, so that
    /// `cutover ctl switch default green` works with no option; `nil` (no socket, with a warning)
    /// when another proxy already answers there, because replacing its socket would orphan it.
    static func quickModeSocket() -> String? {
        let path = ProcessInfo.processInfo.environment["CUTOVER_SOCKET"] ?? CtlCommand.defaultSocket
        if (try? AdminClient(path: path, timeout: .seconds(1))) != nil {
            printError("cutover proxy: warning: another process answers on \(path); this proxy opens no admin socket (give --admin-socket PATH to switch it)")
            return nil
        }
        return path
    }

    /// The single-profile config that `--listen`/`--endpoint` describe.
    static func configFromFlags(_ args: Arguments) throws -> Config {
        guard let listenText = args.value("--listen") else { throw UsageError("give --config FILE, or --listen HOST:PORT with at least one --endpoint") }
        let listen = try hostPort(listenText, option: "--listen")
        let endpointTexts = args.values("--endpoint")
        guard !endpointTexts.isEmpty else { throw UsageError("--listen needs at least one --endpoint NAME=HOST:PORT") }
        var endpoints: [EndpointConfig] = []
        for (index, text) in endpointTexts.enumerated() {
            guard let eq = text.firstIndex(of: "=") else { throw UsageError("--endpoint \"\(text)\": expected NAME=HOST:PORT") }
            let name = String(text[..<eq])
            let address = try hostPort(String(text[text.index(after: eq)...]), option: "--endpoint \(name)")
            endpoints.append(EndpointConfig(name: name, address: address, state: index == 0 ? .online : .offline))
        }
        let modeText = args.value("--mode") ?? "http"
        guard let mode = ListenerMode(rawValue: modeText) else { throw UsageError("--mode: \"\(modeText)\" is not http or tcp") }
        return Config(
            listeners: [ListenerConfig(name: "default", address: listen, mode: mode, profile: "default")],
            profiles: [ProfileConfig(name: "default", endpoints: endpoints)])
    }

    static func hostPort(_ text: String, option: String) throws -> HostPort {
        switch HostPort.parse(text) {
        case .success(let address): return address
        case .failure(let error): throw UsageError("\(option): \"\(text)\" \(error)")
        }
    }
}
