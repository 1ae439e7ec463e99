import Foundation
import XCTest

/// A `cutover backend` process on a free port.
final class Backend {
    let name: String
    let port: UInt16
    let child: ChildProcess

    /// `options` are more `cutover backend` options, such as `--fail-ratio 0.3`.
    init(name: String, directory: TemporaryDirectory, options: [String] = []) throws {
        self.name = name
        let child = try ChildProcess(CutoverBinary.url, ["backend", "--listen", "127.0.0.1:0", "--name", name] + options, directory: directory, label: "backend-\(name)-\(UUID().uuidString.prefix(4))")
        self.child = child
        var port: UInt16 = 0
        waitUntil {
            if let line = child.stdout.split(separator: "\n").first(where: { $0.hasPrefix("listening on ") }),
               let text = line.split(separator: ":").last, let value = UInt16(text) {
                port = value
                return true
            }
            return false
        }
        guard port != 0 else { throw FixtureError("backend \(name) did not start: \(child.stderr)") }
        self.port = port
    }

    var address: String { "127.0.0.1:\(port)" }

    func stop() { child.stop() }
}

/// A `cutover proxy` process started from a JSON config whose listeners use port 0.
final class Proxy {
    let child: ChildProcess
    let configPath: String
    let socketPath: String
    /// Bound port per listener name, read from the proxy's log.
    private(set) var ports: [String: UInt16] = [:]

    /// Writes `config` (a JSON text) to the temp dir and starts the proxy on it; `launcher` is a
    /// command that execs the proxy in its own process (`taskset -c 1`), so `child.pid` stays the proxy's.
    init(config: String, directory: TemporaryDirectory, socketPath: String, extraArguments: [String] = [], expectListeners: Int = 1, launcher: [String] = []) throws {
        self.socketPath = socketPath
        configPath = try directory.write("cutover-\(UUID().uuidString.prefix(4)).json", config)
        let command = launcher + [CutoverBinary.url.path, "proxy", "--config", configPath] + extraArguments
        child = try ChildProcess(URL(fileURLWithPath: command[0]), Array(command.dropFirst()), directory: directory, label: "proxy-\(UUID().uuidString.prefix(4))")
        try waitForListeners(expectListeners)
    }

    /// Waits until `count` listeners logged their ports and the admin socket exists.
    func waitForListeners(_ count: Int) throws {
        let started = waitUntil(timeout: 15) {
            ports = Proxy.parsePorts(child.stderr)
            return ports.count >= count && FileManager.default.fileExists(atPath: socketPath)
        }
        guard started else { throw FixtureError("proxy did not start (exit \(child.isRunning ? "-" : String(child.process.terminationStatus))): \(child.stderr)") }
    }

    static func parsePorts(_ log: String) -> [String: UInt16] {
        var ports: [String: UInt16] = [:]
        for line in log.split(separator: "\n") where line.contains(" listening on ") {
            // "... listening on 127.0.0.1:PORT (http, listener NAME → profile P)"
            guard let onRange = line.range(of: "listening on "), let listenerRange = line.range(of: "listener ") else { continue }
            let address = line[onRange.upperBound...].split(separator: " ")[0]
            let name = line[listenerRange.upperBound...].split(separator: " ")[0]
            if let port = UInt16(address.split(separator: ":").last ?? "") { ports[String(name)] = port }
        }
        return ports
    }

    /// The port of the only (or the named) listener.
    func port(_ listener: String? = nil) -> UInt16 {
        if let listener { return ports[listener] ?? 0 }
        return ports.values.first ?? 0
    }

    func url(_ path: String = "/", listener: String? = nil) -> String { "http://127.0.0.1:\(port(listener))\(path)" }

    /// Runs `cutover ctl` against this proxy.
    @discardableResult
    func ctl(_ words: String..., json: Bool = false) throws -> (status: Int32, stdout: String, stderr: String) {
        try run(CutoverBinary.url.path, ["ctl", "--socket", socketPath] + (json ? ["--json"] : []) + words.flatMap { $0.split(separator: " ").map(String.init) })
    }

    func stop() { child.stop() }
}

/// The config most tests start from: profile `web` with `blue` online and, if given, `green`
/// offline (the standby); an HTTP listener on a free port unless `listeners` says otherwise.
/// `profileExtra` and `rootExtra` are JSON members appended to the profile and to the root.
func blueGreenConfig(
    blue: Backend, green: Backend?, socket: String, profileExtra: String = "", rootExtra: String = "", listeners: String? = nil
) -> String {
    let standby = green.map { #", { "name": "green", "address": "\#($0.address)", "state": "offline" }"# } ?? ""
    return """
        { "listeners": \(listeners ?? #"[{ "name": "web", "address": "127.0.0.1:0", "profile": "web" }]"#),
          "profiles": [{ "name": "web", "endpoints": [
              { "name": "blue", "address": "\(blue.address)" }\(standby) ]\(profileExtra) }],
          "admin": { "socket": "\(socket)" }, "access_log": "off"\(rootExtra) }
        """
}

struct FixtureError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// curl with sane timeouts; returns status code, headers and body.
struct CurlResult {
    let code: Int
    let headers: String
    let body: String
    let exitStatus: Int32

    func header(_ name: String) -> String? {
        for line in headers.split(separator: "\r\n") + headers.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == name.lowercased() {
                return parts[1].trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }
        return nil
    }
}

func curl(_ url: String, _ extra: [String] = [], timeout: Int = 10) throws -> CurlResult {
    let directory = try TemporaryDirectory()
    let headerFile = directory.path("headers")
    let result = try run("/usr/bin/curl", ["-s", "-S", "--max-time", String(timeout), "-D", headerFile, "-o", directory.path("body"), "-w", "%{http_code}"] + extra + [url])
    let body = (try? String(contentsOfFile: directory.path("body"), encoding: .utf8)) ?? ""
    let headers = (try? String(contentsOfFile: headerFile, encoding: .utf8)) ?? ""
    return CurlResult(code: Int(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0, headers: headers, body: body, exitStatus: result.status)
}
