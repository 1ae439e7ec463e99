import Foundation
import Glibc
import XCTest

/// Issue 17: the defects a first real user hit, each proved on the real binary with real backends.
final class OperatorTests: BlueGreenTestCase {
    private func config(profileExtra: String = "", rootExtra: String = "") -> String {
        blueGreenConfig(blue: blue, green: green, socket: socket, profileExtra: profileExtra, rootExtra: rootExtra)
    }

    /// Defect 2: `drain_timeout` bounds tunnels, not HTTP requests. A request still in flight on the
    /// old endpoint at the drain deadline gets its whole answer.
    func testDrainDeadline_letsAnInFlightHTTPRequestFinish() throws {
        let proxy = try Proxy(config: config(profileExtra: #", "drain_timeout": "500ms""#), directory: dir, socketPath: socket)
        defer { proxy.stop() }
        let slow = LoadClient()
        slow.startOnce(port: proxy.port(), connections: 1, path: "/slow?ms=2000")
        XCTAssertTrue(waitUntil { (try? proxy.ctl("show endpoints web --json").stdout.contains("\"in_flight\":1")) ?? false })
        XCTAssertEqual(try proxy.ctl("switch", "web", "green").status, 0)
        XCTAssertTrue(waitUntil(timeout: 10) { slow.results.count + slow.failures.count == 1 }, "the slow request did not end")
        slow.stop()
        XCTAssertEqual(slow.failures, [], "the in-flight request was cut")
        XCTAssertEqual(slow.results.map(\.status), [200])
        XCTAssertEqual(slow.results.map(\.backend), ["blue"])
        let events = try proxy.ctl("show events").stdout
        XCTAssertTrue(events.contains("web/blue offline (drain deadline after"), events)
        XCTAssertTrue(events.contains("0 force-closed"), events)
    }

    /// Defect 3: `--check` runs what start runs short of binding, so each of these configs is
    /// refused by `--check` with the key at fault, and start refuses it before "listening on".
    func testCheck_refusesWhatStartWouldRefuse() throws {
        let cases: [(name: String, key: String, config: String)] = [
            ("unresolvable host", "profiles[0].endpoints[0].address",
             config().replacingOccurrences(of: blue.address, with: "bad..host:80")),
            ("missing socket group", "admin.socket_group",
             config().replacingOccurrences(of: #""admin": { "socket": "\#(socket)""#, with: #""admin": { "socket": "\#(socket)", "socket_group": "no-such-group-17""#)),
            ("state file not a directory", "state_file",
             config(rootExtra: #", "state_file": "\#(try dir.write("plain-file", "x"))/state.json""#)),
            ("state file unreadable", "state_file",
             config(rootExtra: #", "state_file": "\#(try dir.write("state.json", "{ not json"))""#)),
        ]
        for item in cases {
            let path = try dir.write("check-\(item.name.count).json", item.config)
            let check = try IntegrationTests.run(CutoverBinary.url.path, ["proxy", "--config", path, "--check"])
            XCTAssertEqual(check.status, 1, "\(item.name): --check accepted it: \(check.stdout)")
            XCTAssertTrue(check.stderr.contains("\(path): \(item.key):"), "\(item.name): \(check.stderr)")
            let start = try IntegrationTests.run(CutoverBinary.url.path, ["proxy", "--config", path], timeout: 5)
            XCTAssertEqual(start.status, 1, "\(item.name): start did not refuse it")
            XCTAssertFalse(start.stderr.contains("listening on"), "\(item.name): refused only after listening: \(start.stderr)")
        }
    }

    /// Defect 4: the bypass header lets an operator through the maintenance gate, and the backend
    /// never sees it (with the gate open either).
    func testMaintenanceBypassHeader_isNotForwardedToTheBackend() throws {
        let gate = #", "maintenance": { "bypass": { "header": { "name": "X-Cutover-Bypass", "value": "s3cret" } } }"#
        let proxy = try Proxy(config: config(profileExtra: gate), directory: dir, socketPath: socket)
        defer { proxy.stop() }
        let open = try curl(proxy.url("/headers"), ["-H", "X-Cutover-Bypass: s3cret", "-H", "X-Kept: yes"])
        XCTAssertEqual(open.code, 200)
        XCTAssertTrue(open.body.contains("X-Kept: yes"), open.body)
        XCTAssertFalse(open.body.lowercased().contains("s3cret"), open.body)
        XCTAssertEqual(try proxy.ctl("maintenance", "web", "on").status, 0)
        let bypassed = try curl(proxy.url("/headers"), ["-H", "x-cutover-bypass: s3cret"])
        XCTAssertEqual(bypassed.code, 200, "the bypass no longer lets the operator through")
        XCTAssertFalse(bypassed.body.lowercased().contains("s3cret"), bypassed.body)
    }

    /// Defect 5: an agent-only config (databases, no listeners or profiles) starts the agent, so
    /// database credentials need not live in the proxy's file; the proxy still refuses it.
    func testAgentOnlyConfig_startsTheAgent() throws {
        let path = try dir.write("agent.json", #"{ "databases": [{ "name": "primary", "driver": "postgres", "dsn": "host=127.0.0.1 port=1 dbname=app" }] }"#)
        let agentSocket = dir.path("agent.sock")
        let agent = try ChildProcess(
            CutoverBinary.url, ["agent", "--socket", agentSocket, "--journal", dir.path("journal.jsonl"), "--config", path], directory: dir, label: "agent")
        defer { agent.stop() }
        XCTAssertTrue(waitUntil { FileManager.default.fileExists(atPath: agentSocket) }, "the agent refused the config: \(agent.stderr)")
        let proxy = try IntegrationTests.run(CutoverBinary.url.path, ["proxy", "--config", path, "--check"])
        XCTAssertEqual(proxy.status, 1)
        XCTAssertTrue(proxy.stderr.contains("listeners"), proxy.stderr)
    }

    /// Defect 6: a journal entry's `undo` is a command that runs as it stands (driver, path), from
    /// `cutover flag` and from the agent alike.
    func testJournalUndo_runsAsItStands() throws {
        let journal = dir.path("journal.jsonl")
        let flag = dir.path("maintenance flag")  // a space, so the undo must quote it
        let on = try IntegrationTests.run(CutoverBinary.url.path, ["flag", "on", "--driver", "file", "--path", flag, "--journal", journal])
        XCTAssertEqual(on.status, 0, on.stderr)
        let agentSocket = dir.path("agent.sock")
        let agent = try ChildProcess(CutoverBinary.url, ["agent", "--socket", agentSocket, "--journal", dir.path("agent.jsonl")], directory: dir, label: "agent")
        defer { agent.stop() }
        XCTAssertTrue(waitUntil { FileManager.default.fileExists(atPath: agentSocket) }, agent.stderr)
        let agentFlag = dir.path("agent-flag")
        XCTAssertEqual(try IntegrationTests.run(CutoverBinary.url.path, ["ctl", "--socket", agentSocket, "flag", "on", "--driver", "file", "--path", agentFlag]).status, 0)
        let environment = "PATH=\(CutoverBinary.url.deletingLastPathComponent().path):/usr/bin:/bin"
        for (file, path) in [(journal, flag), (dir.path("agent.jsonl"), agentFlag)] {
            let lines = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n")
            guard let before = lines.first, let entry = try JSONSerialization.jsonObject(with: Data(before.utf8)) as? [String: Any],
                  let undo = entry["undo"] as? String else { return XCTFail("no undo in \(lines)") }
            XCTAssertTrue(FileManager.default.fileExists(atPath: path))
            let undone = try IntegrationTests.run("/usr/bin/env", [environment, "/bin/sh", "-c", undo])
            XCTAssertEqual(undone.status, 0, "\(undo): \(undone.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: path), "\(undo) did not undo")
        }
    }

    /// Defect 7: `flag status --driver sql` reads the flag with --status-sql alone.
    func testFlagStatusSQL_needsNoOnSQL() throws {
        let status = try IntegrationTests.run(CutoverBinary.url.path, [
            "flag", "status", "--driver", "sql", "--dsn", "host=127.0.0.1 port=1 dbname=app connect_timeout=2", "--status-sql", "SELECT 1",
        ])
        XCTAssertFalse(status.stderr.contains("--on-sql"), status.stderr)
        XCTAssertEqual(status.status, 1, "port 1 refuses: a connection failure, not a usage error: \(status.stderr)")
    }

    /// Defect 7: `cutover version`, exit 2 for a misspelt ctl option, usage lines that name every
    /// option, and a JSON error object on stdout when `db … --json` fails.
    func testCommandLineNits() throws {
        let binary = CutoverBinary.url.path
        let version = try IntegrationTests.run(binary, ["version"])
        XCTAssertEqual(version.status, 0, version.stderr)
        XCTAssertEqual(version.stdout, try IntegrationTests.run(binary, ["--version"]).stdout)
        let bogus = try IntegrationTests.run(binary, ["ctl", "--socket", socket, "--bogus", "show", "stats"])
        XCTAssertEqual(bogus.status, 2, "a usage error: \(bogus.stderr)")
        XCTAssertTrue(bogus.stderr.contains("--bogus"), bogus.stderr)
        let usageLines = { (command: String) throws -> String in
            try IntegrationTests.run(binary, [command, "--help"]).stdout.components(separatedBy: "\n\n")[0]
        }
        XCTAssertTrue(try usageLines("proxy").contains("--check"))
        XCTAssertTrue(try usageLines("demo").contains("--print-config"))
        let db = try IntegrationTests.run(binary, ["db", "readonly", "status", "--dsn", "host=127.0.0.1 port=1 dbname=app connect_timeout=2", "--json"])
        XCTAssertEqual(db.status, 1)
        let object = try JSONSerialization.jsonObject(with: Data(db.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(object?["ok"] as? Bool, false, db.stdout)
        XCTAssertEqual(object?["code"] as? String, "unreachable", db.stdout)
        XCTAssertNotNil(object?["message"] as? String)
        let usage = try IntegrationTests.run(binary, ["db", "readonly", "sideways", "--json"])
        XCTAssertEqual(usage.status, 2)
        XCTAssertTrue(usage.stdout.contains(#""code":"usage""#), usage.stdout)
    }

    /// Defects 8 and 9: quick mode opens the socket `cutover ctl` looks at by default (here through
    /// $CUTOVER_SOCKET, which both honour) and says where, so `ctl switch default green` needs no
    /// option; a second quick-mode proxy does not steal a live socket, it warns instead.
    func testQuickMode_opensCtlsDefaultSocket() throws {
        let quickSocket = dir.path("quick.sock")
        let environment = ["CUTOVER_SOCKET": quickSocket]
        let arguments = ["proxy", "--listen", "127.0.0.1:0", "--endpoint", "blue=\(blue.address)", "--endpoint", "green=\(green.address)", "--access-log", "off"]
        let first = try ChildProcess(CutoverBinary.url, arguments, directory: dir, label: "quick-1", environment: environment)
        defer { first.stop() }
        XCTAssertTrue(waitUntil { FileManager.default.fileExists(atPath: quickSocket) && !Proxy.parsePorts(first.stderr).isEmpty }, first.stderr)
        XCTAssertTrue(first.stderr.contains("admin socket \(quickSocket)"), first.stderr)
        let port = Proxy.parsePorts(first.stderr).values.first ?? 0
        let switched = try IntegrationTests.run("/usr/bin/env", ["CUTOVER_SOCKET=\(quickSocket)", CutoverBinary.url.path, "ctl", "switch", "default", "green"])
        XCTAssertEqual(switched.status, 0, switched.stdout + switched.stderr)
        XCTAssertEqual(try curl("http://127.0.0.1:\(port)/").body, "green\n")

        let second = try ChildProcess(CutoverBinary.url, arguments, directory: dir, label: "quick-2", environment: environment)
        defer { second.stop() }
        XCTAssertTrue(waitUntil { !Proxy.parsePorts(second.stderr).isEmpty }, second.stderr)
        XCTAssertTrue(second.stderr.contains("another process answers on \(quickSocket)"), second.stderr)
        XCTAssertTrue(second.stderr.contains("no admin socket"), second.stderr)
        let stillFirst = try IntegrationTests.run("/usr/bin/env", ["CUTOVER_SOCKET=\(quickSocket)", CutoverBinary.url.path, "ctl", "show", "endpoints"])
        XCTAssertEqual(stillFirst.status, 0, "the first proxy lost its socket: \(stillFirst.stderr)")
    }

    /// Defect 8: a restart says what it restored, and a directory start creates is logged.
    func testRestart_logsWhatItRestoredAndTheDirectoriesItCreated() throws {
        let stateFile = dir.path("new/state/state.json")
        let text = config(rootExtra: #", "state_file": "\#(stateFile)""#)
        var proxy = try Proxy(config: text, directory: dir, socketPath: socket)
        XCTAssertTrue(proxy.child.stderr.contains("created directory \(dir.path("new/state")) for the state file"), proxy.child.stderr)
        XCTAssertEqual(try proxy.ctl("switch", "web", "green", "--force").status, 0)
        XCTAssertEqual(try proxy.ctl("readonly", "web", "hold").status, 0)
        XCTAssertEqual(try proxy.ctl("set", "endpoint", "web/blue", "weight", "7").status, 0)
        proxy.stop()
        proxy = try Proxy(config: text, directory: dir, socketPath: socket)
        defer { proxy.stop() }
        let log = proxy.child.stderr
        XCTAssertTrue(log.contains("web: readonly hold"), log)
        XCTAssertTrue(log.contains("web/blue offline (config: online), weight 7 (config: 1)"), log)
        XCTAssertTrue(log.contains("web/green online (config: offline)"), log)
    }
}
