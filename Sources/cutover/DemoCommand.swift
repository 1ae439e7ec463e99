import CutoverCore
import CutoverProxy
import Foundation

/// `cutover demo`: two sample backends and the proxy in one process, to see a switch in a minute.
enum DemoCommand {
    static let subcommand = Subcommand(
        name: "demo",
        summary: "blue and green sample backends behind the proxy: see a switch work in a minute",
        help: """
            Usage: cutover demo [--port PORT] [--admin-socket PATH] [--config FILE]
                   cutover demo --print-config

            Starts, in one process, two sample backends ("blue" and "green", each answering with
            its name) and the proxy in front of them, from Config/demo.json: profile "demo", blue
            online, green offline (standby). Then prints what to curl and how to switch.

            Options:
              --port PORT           the proxy's port on 127.0.0.1 (default 8080; 0 = any free port);
                                    the backends then take any free ports and the admin HTTP
                                    listener is off, so a second demo can run beside the first
              --admin-socket PATH   admin socket (default /tmp/cutover-demo.sock)
              --config FILE         the demo config (default Config/demo.json if present, else a
                                    built-in copy of it)
              --print-config        print the built-in copy of Config/demo.json and exit
            """,
        run: run)

    /// Config/demo.json, built in so that the demo also runs outside a checkout (a test keeps them equal).
    static let builtInConfig = """
        {
          "listeners": [
            { "name": "demo", "address": "127.0.0.1:8080", "mode": "http", "profile": "demo" }
          ],
          "profiles": [
            {
              "name": "demo",
              "routing": "priority",
              "endpoints": [
                { "name": "blue", "address": "127.0.0.1:8081", "state": "online" },
                { "name": "green", "address": "127.0.0.1:8082", "state": "offline" }
              ],
              "probe": { "type": "http", "path": "/healthz", "interval": "1s", "timeout": "500ms", "rise": 1, "fall": 2 },
              "drain_timeout": "10s"
            }
          ],
          "admin": { "socket": "/tmp/cutover-demo.sock", "http": "127.0.0.1:9901" }
        }

        """

    static func run(_ words: [String]) throws -> Int32 {
        let args = try Arguments(words, valued: ["--port", "--admin-socket", "--config"])
        try args.rejectUnknown(flags: ["--print-config"])
        if args.has("--print-config") {
            print(builtInConfig, terminator: "")
            return 0
        }
        var path = args.value("--config")
        if path == nil && FileManager.default.fileExists(atPath: "Config/demo.json") { path = "Config/demo.json" }
        var config = try path.map { try ConfigFile.load(path: $0) } ?? ConfigLoader.parse(builtInConfig, file: "(built-in demo config)")
        guard config.listeners.count == 1, let profile = config.profiles.first else {
            throw UsageError("the demo config needs exactly one listener and one profile")
        }
        if let portText = args.value("--port") {
            guard let port = UInt16(portText) else { throw UsageError("--port: \"\(portText)\" is not a port number") }
            config.listeners[0].address.port = port
        }
        if let socket = args.value("--admin-socket") { config.admin.socket = socket }
        // With --port, a second demo (or a test) runs beside the first: its backends take any free
        // port and it has no admin HTTP listener, so nothing collides with the shipped ports.
        let portGiven = args.value("--port") != nil
        if portGiven { config.admin.http = nil }
        var backends: [SampleBackend] = []
        for (index, endpoint) in profile.endpoints.enumerated() {
            var address = endpoint.address
            if portGiven { address.port = 0 }
            let backend = try SampleBackend(name: endpoint.name, address: address)
            backends.append(backend)
            config.profiles[0].endpoints[index].address.port = backend.port
        }
        let socket = config.admin.socket ?? "/tmp/cutover-demo.sock"
        let listenHost = config.listeners[0].address.host
        let listener = config.listeners[0]
        let backendAddresses = backends.map { "127.0.0.1:\($0.port)" }.joined(separator: ", ")
        try withExtendedLifetime(backends) {
            try runDemoProxy(config: config, profile: profile, listener: listener, listenHost: listenHost, socket: socket, backendAddresses: backendAddresses)
        }
    }

    private static func runDemoProxy(config: Config, profile: ProfileConfig, listener: ListenerConfig, listenHost: String, socket: String, backendAddresses: String) throws -> Never {
        try ProxyServer.run(config: config, configPath: nil) { runtime in
            let port = runtime.boundPorts[listener.name] ?? listener.address.port
            let names = profile.endpoints.map(\.name)
            let other = names.count > 1 ? names[1] : names[0]
            print("""
                Cutover demo: profile "\(profile.name)" with \(names.joined(separator: " and ")) on \(backendAddresses)
                proxy listening on http://\(listenHost):\(port)/

                  curl http://\(listenHost):\(port)/                                  # answered by \(names[0])
                  cutover ctl --socket \(socket) switch \(profile.name) \(other)   # switch to \(other)
                  curl http://\(listenHost):\(port)/                                  # answered by \(other)
                  cutover ctl --socket \(socket) show endpoints
                \(config.admin.http.map { "\n  status page: http://\($0)/status   metrics: http://\($0)/metrics\n" } ?? "")
                Ctrl-C stops the demo.
                """)
            fflush(nil)
        }
    }
}
