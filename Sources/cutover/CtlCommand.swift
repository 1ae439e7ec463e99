import CutoverControl
import CutoverCore
import Foundation
import Glibc

/// `cutover ctl`: the admin socket client, for people and scripts.
enum CtlCommand {
    static let defaultSocket = "/tmp/cutover/admin.sock"

    static let subcommand = Subcommand(
        name: "ctl",
        summary: "send commands to a running proxy's (or agent's) admin socket",
        help: """
            Usage: cutover ctl [--socket PATH] [--json] COMMAND...
                   cutover ctl [--socket PATH] [--json]          (commands from standard input)

            Sends COMMAND to the admin socket and prints the answer: "OK ..." or a table for
            people, one JSON object per answer with --json: {"ok":true,"message":...} beside the
            command's own fields (snake_case keys), or {"ok":false,"code":...,"message":...}. An
            "ERR <code>: <message>" answer, or a JSON answer with "ok":false, is printed as
            received and the exit status is 1 (2 for usage errors). Without COMMAND,
            reads one command per line from standard input until its end (with a prompt on a
            terminal); the exit status is 1 if any command failed.

            Options:
              --socket PATH   the admin socket (default: $CUTOVER_SOCKET, else \(defaultSocket))
              --json          JSON answers (for scripts)

            Commands:
            \(AdminCommand.usage.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
            """,
        run: run)

    static func run(_ words: [String]) throws -> Int32 {
        // Options come before the command: everything from the first word that is not one of ours
        // belongs to the command (so `switch demo green --force` passes --force through).
        var socketPath = ProcessInfo.processInfo.environment["CUTOVER_SOCKET"] ?? defaultSocket
        var json = false
        var index = 0
        while index < words.count {
            switch words[index] {
            case "--socket":
                guard index + 1 < words.count else { throw UsageError("--socket needs a value") }
                socketPath = words[index + 1]
                index += 2
                continue
            case "--json":
                json = true
                index += 1
                continue
            default:
                // A command word never starts with "--": this is a misspelt option of ours.
                if words[index].hasPrefix("--") { throw UsageError("unknown option \(words[index]) (options: --socket PATH, --json)") }
            }
            break
        }
        let command = words[index...].joined(separator: " ")
        let client = try AdminClient(path: socketPath)
        if !command.isEmpty {
            return try send(command, json: json, client: client) ? 0 : 1
        }
        let interactive = isatty(STDIN_FILENO) != 0
        var allOK = true
        while true {
            if interactive {
                print("cutover> ", terminator: "")
                fflush(nil)
            }
            guard let line = readLine() else { break }
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            if trimmed == "quit" || trimmed == "exit" { break }
            if !(try send(trimmed, json: json, client: client)) { allOK = false }
        }
        return allOK ? 0 : 1
    }

    /// Sends one command and prints its answer; false when the answer is an error.
    private static func send(_ command: String, json: Bool, client: AdminClient) throws -> Bool {
        let answer = try client.send(json && !command.contains("--json") ? command + " --json" : command)
        print(answer)
        fflush(nil)
        if (try? AdminCommand.parse(command).command) == .followEvents, !answer.hasPrefix("ERR ") {
            // One answer per event until the proxy closes the stream (it stops) or we are interrupted.
            while let next = try? client.nextAnswer() {
                print(next)
                fflush(nil)
            }
            return true
        }
        if answer.hasPrefix("ERR ") { return false }
        if json, let envelope = try? JSONCoding.decode(AdminAnswer<NoAnswerData>.self, from: answer), !envelope.ok { return false }
        return true
    }
}
