/// Commands written for an operator to paste into a POSIX shell, such as a journal entry's undo.
public enum ShellWords {
    /// `word` as a POSIX shell reads it back: bare when it is made of safe characters, else in single quotes.
    public static func quote(_ word: String) -> String {
        if !word.isEmpty && word.allSatisfy({ $0.isLetter || $0.isNumber || "_-./:=@".contains($0) }) { return word }
        return "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// The words joined into one command line, each quoted as needed.
    public static func command(_ words: [String]) -> String {
        words.map(quote).joined(separator: " ")
    }

    /// The `cutover flag ACTION` command for the options a flag command was given (`--driver` first,
    /// the others in name order), so the undo it journals runs as it stands (issue 17, defect 6).
    public static func flagCommand(_ action: String, options: [String: String]) -> String {
        let order = options.keys.sorted { ($0 == "--driver" ? 0 : 1, $0) < ($1 == "--driver" ? 0 : 1, $1) }
        return command(["cutover", "flag", action] + order.flatMap { [$0, options[$0]!] })
    }
}
