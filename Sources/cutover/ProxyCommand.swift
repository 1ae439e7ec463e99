import CutoverCore

enum ProxyCommand {
    static let subcommand = Subcommand(name: "proxy", summary: "(not yet)", help: "cutover proxy") { _ in 1 }
}
