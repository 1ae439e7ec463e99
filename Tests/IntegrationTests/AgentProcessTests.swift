import CutoverCore
import Foundation
import Glibc
import XCTest

/// The real `cutover agent` process: JSON answers to `cutover ctl --json`, and a clean stop on
/// SIGTERM/SIGINT. No database needed: file flags and leases are enough to exercise the socket.
final class AgentProcessTests: XCTestCase {
    private func startAgent(_ directory: TemporaryDirectory) throws -> (ChildProcess, socket: String) {
        let socket = directory.path("agent.sock")
        let agent = try ChildProcess(
            CutoverBinary.url, ["agent", "--socket", socket, "--journal", directory.path("journal.jsonl")], directory: directory, label: "agent")
        XCTAssertTrue(waitUntil { FileManager.default.fileExists(atPath: socket) }, "agent did not bind its socket: \(agent.stderr)")
        return (agent, socket)
    }

    private func ctl(_ socket: String, _ words: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try IntegrationTests.run(CutoverBinary.url.path, ["ctl", "--socket", socket, "--json"] + words)
    }

    /// `ctl --json` appends ` --json`; the agent answers the proxy's envelope instead of refusing it.
    func test_ctlJSON_againstTheAgent_answersTheProxyEnvelope() throws {
        let directory = try TemporaryDirectory()
        let (agent, socket) = try startAgent(directory)
        defer { agent.stop() }

        let help = try ctl(socket, ["help"])
        XCTAssertEqual(help.status, 0, help.stdout + help.stderr)
        let commands = try JSONCoding.decode(AdminAnswer<HelpAnswer>.self, from: help.stdout)
        XCTAssertTrue(commands.ok)
        XCTAssertTrue(commands.data?.commands.contains { $0.hasPrefix("lease show") } ?? false, help.stdout)

        let flag = directory.path("maintenance")
        let on = try ctl(socket, ["flag", "on", "--driver", "file", "--path", flag])
        XCTAssertEqual(on.status, 0, on.stdout + on.stderr)
        XCTAssertEqual(try JSONCoding.decode(AdminAnswer<NoAnswerData>.self, from: on.stdout).ok, true, on.stdout)
        XCTAssertTrue(on.stdout.contains(#""state":"on""#), on.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: flag))

        let leases = try ctl(socket, ["lease", "show"])
        XCTAssertEqual(leases.status, 0, leases.stdout + leases.stderr)
        XCTAssertTrue(leases.stdout.contains(#""leases":[]"#), leases.stdout)

        let refused = try ctl(socket, ["lease", "renew", "nope", "1m"])
        XCTAssertEqual(refused.status, 1, "an ok:false answer exits 1: \(refused.stdout)")
        let envelope = try JSONCoding.decode(AdminAnswer<NoAnswerData>.self, from: refused.stdout)
        XCTAssertFalse(envelope.ok)
        XCTAssertEqual(envelope.code, "no-lease")
    }

    /// SIGTERM (and SIGINT) stop the agent as they stop the proxy: exit 0, socket file removed.
    func test_sigtermAndSigint_exit0_andRemoveTheSocketFile() throws {
        for number in [SIGTERM, SIGINT] {
            let directory = try TemporaryDirectory()
            let (agent, socket) = try startAgent(directory)
            defer { agent.stop() }
            agent.signal(number)
            XCTAssertEqual(agent.waitForExit(timeout: 10), 0, "signal \(number): \(agent.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: socket), "signal \(number) left the socket file")
        }
    }

    /// A SIGTERM during a command lets it finish and answer before the agent exits.
    func test_sigterm_finishesTheCommandInProgress() throws {
        let directory = try TemporaryDirectory()
        let (agent, socket) = try startAgent(directory)
        defer { agent.stop() }
        // A "proxy" that accepts connections and never answers: the flag command waits its 2 s timeout.
        let silent = directory.path("silent.sock")
        let listener = try Self.listenWithoutAnswering(at: silent)
        defer { close(listener) }

        let answer = DispatchQueue(label: "test.ctl")
        nonisolated(unsafe) var result: (status: Int32, stdout: String, stderr: String)?
        let done = DispatchSemaphore(value: 0)
        answer.async {
            result = try? IntegrationTests.run(CutoverBinary.url.path, ["ctl", "--socket", socket, "flag", "status", "--driver", "proxy", "--socket", silent, "--profile", "web", "--gate", "readonly", "--timeout", "2s"])
            done.signal()
        }
        // The command is in progress once the agent's flag driver has connected to the silent socket.
        var pending = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        XCTAssertEqual(poll(&pending, 1, 10_000), 1, "the agent never started the command")
        agent.signal(SIGTERM)
        XCTAssertEqual(done.wait(timeout: .now() + 15), .success)
        XCTAssertTrue(result?.stdout.contains("ERR proxy-unreachable") ?? false, "the command in progress was answered: \(String(describing: result))")
        XCTAssertEqual(agent.waitForExit(timeout: 10), 0, agent.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: socket))
    }

    private static func listenWithoutAnswering(at path: String) throws -> Int32 {
        let fd = try bindUnixSocket(path, type: Int32(SOCK_STREAM.rawValue))
        guard listen(fd, 8) == 0 else {
            close(fd)
            throw NSError(domain: "listen", code: Int(errno))
        }
        return fd
    }
}
