/// A migration file taken apart into statements, without a server: what `db run` sends, and what it refuses.
///
/// The scanner knows just enough of PostgreSQL's lexical rules that a keyword inside a string, a quoted
/// identifier or a comment is never taken for a statement: `--` and nested `/* */` comments, `'…'` with
/// `''`, `E'…'` with backslash escapes, `"…"` identifiers, `$tag$…$tag$` bodies, and SQL-standard
/// function bodies (`BEGIN ATOMIC … END`) whose inner semicolons do not end the statement.
/// It does not parse SQL: the server does that. Pure, so every rule is tested without a cluster.
public struct SQLScript: Sendable, Equatable {
    /// One statement as written (comments kept, trailing `;` dropped) and its first words, upper-cased.
    public struct Statement: Sendable, Equatable {
        /// The statement text, trimmed, without the terminating semicolon.
        public var text: String
        /// Up to the first twelve words outside comments and strings, upper-cased (`["CREATE", "INDEX", "CONCURRENTLY", …]`).
        public var words: [String]
        /// 1-based line where the statement starts.
        public var line: Int
    }

    /// A statement that cannot run inside a transaction block, and why the scanner thinks so.
    public struct Refusal: Sendable, Equatable {
        /// What it is, in the words of the SQL (`CREATE INDEX CONCURRENTLY`).
        public var what: String
        /// 1-based line of the statement.
        public var line: Int

        /// A refusal of `what` at `line`.
        public init(what: String, line: Int) {
            self.what = what
            self.line = line
        }
    }

    /// The first line that switches a file to one-statement-at-a-time mode.
    public static let noTransactionDirective = "-- cutover: no-transaction"

    /// The statements in file order; empty ones (`;;`, comment-only) are left out.
    public let statements: [Statement]
    /// True when the file's first non-blank line is `-- cutover: no-transaction`.
    public let declaresNoTransaction: Bool

    /// Scans `text`.
    public init(_ text: String) {
        statements = Self.split(text)
        let firstLine = text.split(separator: "\n", omittingEmptySubsequences: true)
            .first { !$0.allSatisfy(\.isWhitespace) }
            .map { $0.lowercased().split(whereSeparator: \.isWhitespace).joined(separator: " ") }
        declaresNoTransaction = firstLine == Self.noTransactionDirective
    }

    /// Statements that cannot run in one transaction block (or would end it), in file order.
    public var transactionRefusals: [Refusal] {
        statements.compactMap { statement in Self.refusal(statement.words).map { Refusal(what: $0, line: statement.line) } }
    }

    /// Why `words` cannot run inside `BEGIN … COMMIT`, or `nil` when it can.
    ///
    /// PostgreSQL refuses these with SQLSTATE 25001; transaction control is refused as well, because a
    /// COMMIT inside the file would commit half a migration and leave the rest outside the transaction.
    static func refusal(_ words: [String]) -> String? {
        func starts(_ prefix: String...) -> Bool { words.count >= prefix.count && Array(words.prefix(prefix.count)) == prefix }
        let w = words
        if starts("CREATE", "INDEX", "CONCURRENTLY") { return "CREATE INDEX CONCURRENTLY" }
        if starts("CREATE", "UNIQUE", "INDEX", "CONCURRENTLY") { return "CREATE UNIQUE INDEX CONCURRENTLY" }
        if starts("DROP", "INDEX", "CONCURRENTLY") { return "DROP INDEX CONCURRENTLY" }
        if w.first == "REINDEX" && w.contains("CONCURRENTLY") { return "REINDEX … CONCURRENTLY" }
        if starts("REINDEX", "DATABASE") || starts("REINDEX", "SYSTEM") { return "REINDEX \(w[1])" }
        if w.first == "VACUUM" { return "VACUUM" }
        if starts("CREATE", "DATABASE") { return "CREATE DATABASE" }
        if starts("DROP", "DATABASE") { return "DROP DATABASE" }
        if starts("ALTER", "SYSTEM") { return "ALTER SYSTEM" }
        if starts("CREATE", "TABLESPACE") { return "CREATE TABLESPACE" }
        if starts("DROP", "TABLESPACE") { return "DROP TABLESPACE" }
        if starts("ALTER", "TYPE") && w.contains("ADD") && w.contains("VALUE") { return nil }  // allowed since PG 12
        if starts("DETACH", "PARTITION") { return nil }
        if starts("ALTER", "TABLE") && w.contains("DETACH") && w.contains("CONCURRENTLY") { return "ALTER TABLE … DETACH PARTITION … CONCURRENTLY" }
        if starts("CREATE", "SUBSCRIPTION") || starts("DROP", "SUBSCRIPTION") { return "\(w[0]) SUBSCRIPTION" }
        if starts("COMMIT", "PREPARED") || starts("ROLLBACK", "PREPARED") || starts("PREPARE", "TRANSACTION") {
            return "\(w[0]) \(w[1]) (two-phase commit)"
        }
        switch w.first {
        case "BEGIN", "START", "COMMIT", "END", "ABORT":
            return "\(w[0]) (transaction control: the migration's transaction is cutover's)"
        case "ROLLBACK" where !w.contains("TO"):
            return "ROLLBACK (transaction control: the migration's transaction is cutover's)"
        default:
            return nil
        }
    }

    // MARK: scanner

    /// Splits at top-level semicolons, keeping each statement's text and first words.
    static func split(_ text: String) -> [Statement] {
        let chars = Array(text.unicodeScalars)
        var out: [Statement] = []
        var start = 0  // index of the current statement's first character
        var words: [String] = []
        var word = ""
        var line = 1
        var firstLine: Int?  // line of the first significant character of the current statement
        var atomicDepth = 0  // > 0 inside BEGIN ATOMIC … END
        var lastWord = ""
        var i = 0

        func endWord() {
            guard !word.isEmpty else { return }
            let upper = word.uppercased()
            // A body is `BEGIN ATOMIC`; inside it, CASE … END nests and the last END closes it.
            if atomicDepth > 0 {
                if upper == "CASE" { atomicDepth += 1 }
                if upper == "END" { atomicDepth -= 1 }
            } else if upper == "ATOMIC" && lastWord == "BEGIN" && words.first != "BEGIN" {
                atomicDepth = 1
            }
            if words.count < 12 { words.append(upper) }
            lastWord = upper
            word = ""
        }
        func finish(upTo end: Int) {
            endWord()
            let body = String(String.UnicodeScalarView(chars[start..<end])).trimmingCharacters()
            if !words.isEmpty, let firstLine {
                out.append(Statement(text: body, words: words, line: firstLine))
            }
            words = []
            lastWord = ""
            firstLine = nil
        }

        while i < chars.count {
            let c = chars[i]
            let next: Unicode.Scalar? = i + 1 < chars.count ? chars[i + 1] : nil
            if c == "\n" { line += 1 }
            // Comments: skipped for words, kept in the text.
            if c == "-" && next == "-" {
                endWord()
                while i < chars.count && chars[i] != "\n" { i += 1 }
                continue
            }
            if c == "/" && next == "*" {
                endWord()
                var depth = 1
                i += 2
                while i < chars.count && depth > 0 {
                    if chars[i] == "\n" { line += 1 }
                    if chars[i] == "/" && i + 1 < chars.count && chars[i + 1] == "*" { depth += 1; i += 2; continue }
                    if chars[i] == "*" && i + 1 < chars.count && chars[i + 1] == "/" { depth -= 1; i += 2; continue }
                    i += 1
                }
                continue
            }
            if firstLine == nil && !c.properties.isWhitespace && c != ";" { firstLine = line }
            if c == "'" {
                // E'…' (the E is the word just read) honours backslash escapes; '' is a quote either way.
                let escapes = word.uppercased() == "E"
                endWord()
                i = skipQuoted(chars, from: i, quote: "'", backslashEscapes: escapes, line: &line)
                continue
            }
            if c == "\"" {
                endWord()
                if words.count < 12 { words.append("\"") }
                lastWord = "\""
                i = skipQuoted(chars, from: i, quote: "\"", backslashEscapes: false, line: &line)
                continue
            }
            if c == "$", word.isEmpty, let close = dollarTag(chars, at: i) {
                endWord()
                if words.count < 12 { words.append("$") }
                lastWord = "$"
                let tag = Array(chars[i..<close])
                i = close
                while i < chars.count {
                    if chars[i] == "\n" { line += 1 }
                    if chars[i] == "$" && i + tag.count <= chars.count && Array(chars[i..<(i + tag.count)]) == tag {
                        i += tag.count
                        break
                    }
                    i += 1
                }
                continue
            }
            if c == ";" {
                // The word before it may be the END that closes a BEGIN ATOMIC body.
                endWord()
                if atomicDepth == 0 {
                    finish(upTo: i)
                    i += 1
                    start = i
                    continue
                }
            }
            if isWordScalar(c) {
                word.unicodeScalars.append(c)
            } else {
                endWord()
            }
            i += 1
        }
        finish(upTo: chars.count)
        return out
    }

    /// Index just past the closing quote (a doubled quote is part of the text).
    private static func skipQuoted(_ chars: [Unicode.Scalar], from open: Int, quote: Unicode.Scalar, backslashEscapes: Bool, line: inout Int) -> Int {
        var i = open + 1
        while i < chars.count {
            let c = chars[i]
            if c == "\n" { line += 1 }
            if backslashEscapes && c == "\\" { i += 2; continue }
            if c == quote {
                if i + 1 < chars.count && chars[i + 1] == quote { i += 2; continue }
                return i + 1
            }
            i += 1
        }
        return i
    }

    /// When a dollar quote opens at `i` (`$$` or `$tag$`), the index just past its opening tag.
    private static func dollarTag(_ chars: [Unicode.Scalar], at i: Int) -> Int? {
        var j = i + 1
        while j < chars.count, chars[j] != "$" {
            let c = chars[j]
            // A tag is an identifier without `$`; `$1` is a parameter, not a quote.
            guard c == "_" || c.properties.isAlphabetic || (j > i + 1 && ("0"..."9").contains(c)) else { return nil }
            j += 1
        }
        return j < chars.count ? j + 1 : nil
    }

    private static func isWordScalar(_ c: Unicode.Scalar) -> Bool {
        c == "_" || c.properties.isAlphabetic || ("0"..."9").contains(c)
    }
}

extension String {
    /// Without leading and trailing whitespace (Foundation-free).
    fileprivate func trimmingCharacters() -> String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}
