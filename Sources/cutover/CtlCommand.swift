import CutoverCore

enum CtlCommand {
    static let subcommand = Subcommand(name: "ctl", summary: "(not yet)", help: "cutover ctl") { _ in 1 }
}
