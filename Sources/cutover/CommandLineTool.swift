import CutoverCore
import Foundation

/// One `cutover` subcommand: its name, a one-line summary for `cutover --help`, its full help, and its body.
struct Subcommand: Sendable {
    let name: String
    let summary: String
    let help: String
    /// Runs the command; returns the process exit status. May never return (servers).
    let run: @Sendable ([String]) throws -> Int32
}

/// Dispatches `cutover COMMAND ...` to the subcommands.
enum CommandLineTool {
    static let subcommands: [Subcommand] = [
        ProxyCommand.subcommand,
        DemoCommand.subcommand,
        CtlCommand.subcommand,
        BackendCommand.subcommand,
        DBCommand.subcommand,
        FlagCommand.subcommand,
        AgentCommand.subcommand,
        UpgradeCommand.subcommand,
    ]

    static let overview = """
        cutover — move live traffic from v1 to v2 without users noticing.

        Usage: cutover COMMAND [OPTIONS]
               cutover COMMAND --help
               cutover version | --version

        Commands:
        """

    /// Runs the command line and returns the exit status: 0 ok, 1 failure, 2 usage error.
    static func run(_ arguments: [String]) -> Int32 {
        guard let name = arguments.first, name != "--help", name != "-h", name != "help" else {
            print(usage())
            return arguments.isEmpty ? 2 : 0
        }
        if name == "--version" || name == "version" {
            print("cutover \(CutoverVersion.string)")
            return 0
        }
        guard let command = subcommands.first(where: { $0.name == name }) else {
            printError("cutover: unknown command '\(name)'\n\n\(usage())")
            return 2
        }
        let rest = Array(arguments.dropFirst())
        if rest.contains("--help") || rest.contains("-h") {
            print(command.help)
            return 0
        }
        do {
            return try command.run(rest)
        } catch let error as UsageError {
            printError("cutover \(command.name): \(error.description)\nRun 'cutover \(command.name) --help' for usage.")
            return 2
        } catch {
            printError("cutover \(command.name): \(error)")
            return 1
        }
    }

    static func usage() -> String {
        let width = subcommands.map(\.name.count).max() ?? 0
        let lines = subcommands.map { "  \($0.name.padding(toLength: width + 2, withPad: " ", startingAt: 0))\($0.summary)" }
        return overview + "\n" + lines.joined(separator: "\n")
    }
}

/// Writes a line to standard error.
func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}
