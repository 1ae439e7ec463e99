import Foundation
import XCTest

/// A `cutover proxy` with one listener (`front`, mode http or tcp) in front of one profile `web`,
/// one worker unless asked (so every client connection shares one upstream pool) and an admin socket.
final class ProxyRig {
    let proxy: Proxy

    /// One endpoint of profile `web`.
    struct Endpoint {
        let name: String
        let address: String
        var state = "online"
    }

    /// Starts the proxy; `settings` are extra top-level config members, e.g. `"timeouts": {...}`;
    /// `adminHTTP` adds the admin HTTP listener, for tests that read `/metrics`; `probed: false`
    /// leaves the profile without an active probe (whose first run lands anywhere in its interval);
    /// `launcher` as in `Proxy`.
    init(directory: TemporaryDirectory, endpoints: [Endpoint], mode: String = "http", settings: [String] = [], adminHTTP: Bool = false, probed: Bool = true, workers: Int = 1, launcher: [String] = []) throws {
        let socket = directory.path("admin-\(UUID().uuidString.prefix(4)).sock")
        let list = endpoints.map { #"{ "name": "\#($0.name)", "address": "\#($0.address)", "state": "\#($0.state)" }"# }
        let http = adminHTTP ? #", "http": "127.0.0.1:0""# : ""
        // Slow TCP probes keep health probing out of the way of what the tests count.
        let members = [
            #""listeners": [{ "name": "front", "address": "127.0.0.1:0", "mode": "\#(mode)", "profile": "web" }]"#,
            #""profiles": [{ "name": "web", \#(probed ? #""probe": { "type": "tcp", "interval": "30s" }, "# : "")"endpoints": [\#(list.joined(separator: ", "))] }]"#,
            #""admin": { "socket": "\#(socket)"\#(http) }"#, #""access_log": "off""#, #""workers": \#(workers)"#,
        ] + settings
        proxy = try Proxy(config: "{ " + members.joined(separator: ",\n  ") + " }", directory: directory, socketPath: socket, launcher: launcher)
    }

    var port: UInt16 { proxy.port() }

    func url(_ path: String) -> String { proxy.url(path) }

    /// A raw client connection to the listener.
    func connect(readTimeout: Double = 10) throws -> RawConnection {
        let connection = try RawConnection(port: port)
        connection.setReadTimeout(readTimeout)
        return connection
    }

    /// `show endpoints --json` for endpoint `name`.
    func endpoint(_ name: String) throws -> [String: Any] {
        let object = try json(proxy.ctl("show", "endpoints", json: true))
        let endpoints = object["endpoints"] as? [[String: Any]] ?? []
        guard let found = endpoints.first(where: { $0["name"] as? String == name }) else {
            throw FixtureError("no endpoint \(name) in \(object)")
        }
        return found
    }

    /// `show stats --json`.
    func stats() throws -> [String: Any] {
        try json(proxy.ctl("show", "stats", json: true))
    }

    private func json(_ result: (status: Int32, stdout: String, stderr: String)) throws -> [String: Any] {
        guard result.status == 0, let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] else {
            throw FixtureError("ctl failed (\(result.status)): \(result.stdout) \(result.stderr)")
        }
        return object
    }

    /// Peak resident memory of the proxy process in KiB (`VmHWM`), to show bodies are not buffered.
    var peakResidentKiB: Int {
        let status = (try? String(contentsOfFile: "/proc/\(proxy.child.pid)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    func stop() { proxy.stop() }
}
