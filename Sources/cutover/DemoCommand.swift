import CutoverCore

enum DemoCommand {
    static let subcommand = Subcommand(name: "demo", summary: "(not yet)", help: "cutover demo") { _ in 1 }
}
