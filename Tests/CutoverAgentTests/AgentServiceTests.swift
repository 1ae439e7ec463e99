@testable import CutoverAgent
import CutoverControl
import CutoverCore
import Foundation
import XCTest

/// The long-running agent's commands, leases and socket, against a real cluster.
final class AgentServiceTests: ClusterTestCase {
    var directory: String!
    let logged = LineLog()

    override func setUpWithError() throws {
        try super.setUpWithError()
        directory = NSTemporaryDirectory() + "cutover-agent-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
        if let cluster { try cluster.connect("postgres").query("ALTER DATABASE app RESET default_transaction_read_only") }
    }

    func service() -> AgentService {
        let log = logged
        return AgentService(journal: Journal(path: directory + "/journal.jsonl"), databases: ["primary": cluster.dsn()]) { log.append($0) }
    }

    func mode() throws -> String { try ReadOnlyFence(target: ConnectionString(cluster.dsn())).status().mode }

    func test_leaseExpiry_givesDatabaseBackReadWrite_andLogsWhy() throws {
        let agent = service()
        let t0 = ContinuousClock.now
        let on = agent.handle("db readonly on primary --grace 100ms --lease 10m", now: t0)
        XCTAssertTrue(on.hasPrefix("OK {"), on)
        XCTAssertEqual(try mode(), "read-only")
        XCTAssertEqual(agent.expireLeases(now: t0 + .seconds(300)), [], "not expired yet")
        XCTAssertEqual(agent.handle("lease renew primary 10m", now: t0 + .seconds(540)), "OK lease primary renewed for 10m")
        XCTAssertEqual(agent.expireLeases(now: t0 + .seconds(660)), [], "the renewal moved the expiry")
        XCTAssertEqual(try mode(), "read-only")
        XCTAssertEqual(agent.expireLeases(now: t0 + .seconds(1141)), ["primary"])
        XCTAssertEqual(try mode(), "read-write")
        XCTAssertTrue(logged.lines.contains { $0.contains("lease for primary expired without renewal") }, "\(logged.lines)")
        let actions = Journal(path: directory + "/journal.jsonl").entries().map(\.action)
        XCTAssertEqual(actions, ["db readonly on --lease 10m", "db readonly on --lease 10m", "db readonly off (lease expired)", "db readonly off (lease expired)"])
        XCTAssertEqual(agent.handle("lease show"), "OK no leases")
    }

    /// A lease outlives the agent that took it: a restarted agent re-arms it from the file beside its
    /// journal and still gives the database back when it runs out.
    func test_leaseSurvivesAgentRestart_andStillGivesTheDatabaseBack() throws {
        let t0 = ContinuousClock.now
        XCTAssertTrue(service().handle("db readonly on primary --grace 100ms --lease 10m", now: t0).hasPrefix("OK {"))
        XCTAssertEqual(try mode(), "read-only")
        let attributes = try FileManager.default.attributesOfItem(atPath: directory + "/journal.jsonl.leases")
        XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, 0o600, "the lease file may hold a connection string")

        // The first agent is gone; a new one starts from the same journal.
        let restarted = service()
        XCTAssertTrue(restarted.handle("lease show").hasPrefix("OK primary="), restarted.handle("lease show"))
        XCTAssertTrue(logged.lines.contains { $0.contains("re-armed the lease on primary") }, "\(logged.lines)")
        XCTAssertEqual(restarted.expireLeases(now: .now + .seconds(300)), [], "not expired yet")
        XCTAssertEqual(try mode(), "read-only")
        XCTAssertEqual(restarted.expireLeases(now: .now + .seconds(601)), ["primary"])
        XCTAssertEqual(try mode(), "read-write")
        XCTAssertEqual(service().handle("lease show"), "OK no leases", "a given-back lease is not re-armed again")
    }

    /// Give back first, then forget: an expired lease whose `off` fails (the database is unreachable)
    /// stays in the lease file and is tried again, after the retry delay and by the next agent.
    func test_leaseExpiry_whenOffFails_keepsTheLeaseOnDisk_andRetries() throws {
        let t0 = ContinuousClock.now
        XCTAssertTrue(service().handle("db readonly on primary --grace 100ms --lease 1m", now: t0).hasPrefix("OK {"))
        XCTAssertEqual(try mode(), "read-only")

        // The same lease file, but "primary" cannot be reached: the give-back fails.
        let port = try PostgresCluster.freePort()
        let log = logged
        let cut = AgentService(
            journal: Journal(path: directory + "/journal.jsonl"), databases: ["primary": "host=127.0.0.1 port=\(port) dbname=app user=postgres"],
            retryDelay: .seconds(30)) { log.append($0) }
        let later = ContinuousClock.now + .seconds(120)
        XCTAssertEqual(cut.expireLeases(now: later), [], "nothing was given back")
        XCTAssertEqual(try leaseFileNames(), ["primary"], "the lease is still on disk after the failed off")
        XCTAssertTrue(cut.handle("lease show").hasPrefix("OK primary="), cut.handle("lease show"))
        XCTAssertTrue(logged.lines.contains { $0.contains("could not give primary back read-write") && $0.contains("the lease is kept") }, "\(logged.lines)")
        let attempts = { Journal(path: self.directory + "/journal.jsonl").entries().filter { $0.action == "db readonly off (lease expired)" && $0.phase == "after" }.map { $0.result ?? "" } }
        XCTAssertEqual(attempts(), ["failed"])
        XCTAssertEqual(cut.expireLeases(now: later + .seconds(10)), [], "within the retry delay")
        XCTAssertEqual(attempts(), ["failed"], "no new try within the retry delay")
        XCTAssertEqual(cut.expireLeases(now: later + .seconds(31)), [])
        XCTAssertEqual(attempts(), ["failed", "failed"], "tried again after the retry delay")
        XCTAssertEqual(try mode(), "read-only")

        // The next agent reaches the database and gives it back; only then is the lease forgotten.
        let restarted = service()
        XCTAssertEqual(restarted.expireLeases(now: .now + .seconds(120)), ["primary"])
        XCTAssertEqual(try mode(), "read-write")
        XCTAssertEqual(try leaseFileNames(), [])
        XCTAssertEqual(attempts(), ["failed", "failed", "ok"])
    }

    /// The names in the lease file, read as the agent's own record type.
    private func leaseFileNames() throws -> [String] {
        let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/journal.jsonl.leases"))
        return try JSONCoding.decoder.decode([LeaseRecord].self, from: data).map(\.name)
    }

    /// A lease file written by the first agents (`JSONSerialization`, the same snake_case keys) is re-armed.
    func test_leaseFileOfTheFirstAgents_isReArmed() throws {
        let expiresAt = Date().timeIntervalSince1970 + 600
        let old = #"[{"control_database":"postgres","duration_ms":600000,"expires_at":"# + "\(expiresAt)" + #","name":"primary","source":"primary"}]"#
        try old.write(toFile: directory + "/journal.jsonl.leases", atomically: true, encoding: .utf8)
        let agent = service()
        let shown = agent.handle("lease show")
        XCTAssertTrue(shown.hasPrefix("OK primary="), shown)
        let left = Int(shown.dropFirst("OK primary=".count).dropLast(2)) ?? 0
        XCTAssertTrue((590_000...600_000).contains(left), shown)
    }

    /// `--json` anywhere on a line (as `cutover ctl --json` sends it) answers the proxy's envelope.
    func test_jsonAnswers_areTheProxyEnvelope() throws {
        let agent = service()
        let status = try JSONCoding.decode(AdminAnswer<DatabaseStatusAnswer>.self, from: agent.handle("db readonly status primary --json"))
        XCTAssertTrue(status.ok)
        XCTAssertEqual(status.data?.status.mode, "read-write")
        XCTAssertNil(status.data?.leaseMs)
        let on = agent.handle("db readonly on primary --grace 100ms --lease 1m --json")
        XCTAssertTrue(on.contains(#""grace_ms":100"#), "snake_case keys: \(on)")
        let leased = try JSONCoding.decode(AdminAnswer<DatabaseStatusAnswer>.self, from: agent.handle("db readonly status primary --json"))
        XCTAssertEqual(leased.data?.status.mode, "read-only")
        XCTAssertNotNil(leased.data?.leaseMs)
        let leases = try JSONCoding.decode(AdminAnswer<LeasesAnswer>.self, from: agent.handle("lease show --json"))
        XCTAssertEqual(leases.data?.leases.map(\.name), ["primary"])
        XCTAssertTrue(agent.handle("db readonly off primary --json").hasPrefix(#"{"#))
        let refused = try JSONCoding.decode(AdminAnswer<NoAnswerData>.self, from: agent.handle("--json lease renew primary 1m"))
        XCTAssertFalse(refused.ok)
        XCTAssertEqual(refused.code, "no-lease")
        XCTAssertEqual(agent.handle("lease show"), "OK no leases", "text answers are unchanged")
    }

    /// The agent raises and lowers maintenance flags with the same words as `cutover flag`, and
    /// journals each change.
    func test_flagCommands_roundTripAFileFlag_andAreJournaled() throws {
        let agent = service()
        let path = directory + "/maintenance"
        XCTAssertTrue(agent.handle("flag on --driver file --path \(path)").hasPrefix("OK {"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: path))
        XCTAssertTrue(agent.handle("flag status --driver file --path \(path)").contains("\"state\":\"on\""))
        XCTAssertTrue(agent.handle("flag off --driver file --path \(path)").hasPrefix("OK {"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
        XCTAssertTrue(agent.handle("flag on --driver carrier-pigeon").hasPrefix("ERR usage: unknown driver"))
        XCTAssertTrue(agent.handle("flag on --driver file").hasPrefix("ERR usage: --path is required"))
        XCTAssertTrue(agent.handle("flag on --driver proxy --socket \(directory!)/none.sock --profile web --gate readonly").hasPrefix("ERR proxy-unreachable: "))
        let actions = Journal(path: directory + "/journal.jsonl").entries().map(\.action)
        XCTAssertEqual(actions, ["flag on", "flag on", "flag off", "flag off", "flag on", "flag on"])
    }

    func test_offReleasesTheLease() throws {
        let agent = service()
        XCTAssertTrue(agent.handle("db readonly on primary --grace 100ms --lease 1m").hasPrefix("OK"))
        XCTAssertTrue(agent.handle("db readonly off primary").hasPrefix("OK"))
        XCTAssertEqual(agent.handle("lease show"), "OK no leases")
    }

    func test_errors_areOneLineERRWithCode() throws {
        let agent = service()
        let port = try PostgresCluster.freePort()
        let unreachable = agent.handle("db readonly status 'host=127.0.0.1 port=\(port) dbname=app user=postgres'")
        XCTAssertTrue(unreachable.hasPrefix("ERR unreachable: "), unreachable)
        XCTAssertFalse(unreachable.contains("\n"))
        XCTAssertTrue(agent.handle("bogus").hasPrefix("ERR unknown-command: "))
        XCTAssertTrue(agent.handle("db readonly on nosuchname").hasPrefix("ERR unknown-database: "))
        XCTAssertTrue(agent.handle("lease renew primary 1m").hasPrefix("ERR no-lease: "))
        XCTAssertTrue(agent.handle("db readonly on primary --grace soon").hasPrefix("ERR usage: "))
    }

    func test_socketServer_answersOneLinePerCommand() throws {
        let server = try AgentServer(path: directory + "/agent.sock", service: service())
        defer { server.stop() }
        let client = try AdminClient(path: server.path, timeout: .seconds(5))
        let status = try client.send("db readonly status primary")
        XCTAssertTrue(status.hasPrefix("OK {") && status.contains("\"mode\":\"read-write\""), status)
        let error = try client.send("nonsense")
        XCTAssertTrue(error.hasPrefix("ERR unknown-command"), error)
        let attributes = try FileManager.default.attributesOfItem(atPath: server.path)
        XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, 0o600)
    }

    func test_commandWords_keepQuotedConnectionStrings() {
        XCTAssertEqual(CommandWords.split("db readonly on 'host=a dbname=b' --grace 2s"), ["db", "readonly", "on", "host=a dbname=b", "--grace", "2s"])
        XCTAssertEqual(CommandWords.split("  lease  show "), ["lease", "show"])
    }
}
