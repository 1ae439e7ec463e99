import CutoverAgent
import CutoverCore
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// `cutover upgrade plan|run|status|rollback|resume`: the runbook engine (docs/runbooks.md).
enum UpgradeCommand {
    static let subcommand = Subcommand(name: "upgrade", summary: "plan, run, inspect, roll back or resume an upgrade runbook", help: help, run: run)

    static let help = """
        Usage: cutover upgrade plan     RUNBOOK [--set NAME=VALUE]... [--json]
               cutover upgrade run      RUNBOOK [--set NAME=VALUE]... [--journal DIR] [--yes]
               cutover upgrade status   [--journal DIR] [--json]
               cutover upgrade rollback [--journal DIR] [--yes] [--accept-data-loss]
               cutover upgrade resume   [--journal DIR] [--yes]

        Runs an upgrade runbook (one JSON file: params and an ordered list of steps, see
        docs/runbooks.md) as one journaled cutover with one undo.

          plan      changes nothing. Prints one block per step: what it does, to what, its undo (or
                    "cannot be undone"), the point of no return, and the windows: what is read-only,
                    held or in maintenance, between which steps, and for how long at most (the sum
                    of the step timeouts). Then checks what can be checked read-only: the proxy
                    socket answers and knows each profile and endpoint named, each database answers,
                    programs exist. Exit 1 naming every failed check. A targeted proxy that is
                    a node of a fleet is listed with the fleet's nodes (its steps reach them all).
          run       runs the steps in order. Before each step the journal records (append + fsync)
                    the step and its undo, computed from the state read just before; after it, the
                    result. Prints a progress line per step (elapsed, what it waits for). On a failed
                    or timed-out step it undoes the steps done so far, last first (never past a
                    point of no return), and exits 1 saying which step failed, why, and what it
                    undid. Refused while the directory's last run is unfinished (running or
                    interrupted): resume or roll that back first.
          status    what the journal says: running, succeeded, failed, rolled-back or interrupted
                    (the journal says it started, nothing says it ended, and its process is gone);
                    each step pending, running, done, failed or undone; the failed step and why;
                    what resume and rollback would do. Reads nothing but the journal.
          rollback  undoes the last run's effects in reverse order, as recorded in its journal
                    (including a step interrupted midway). Refused past a point of no return unless
                    --accept-data-loss, naming what would be lost. Undo failures are reported and
                    left for status; rollback can be run again.
          resume    continues an interrupted run at the step it was in, first checking whether that
                    step's effect is already in place (then it is not redone), then the rest.

        Options:
          --set NAME=VALUE      fill the runbook parameter NAME (repeatable; later wins). An
                                undeclared NAME, or a required parameter left unset, is refused.
          --journal DIR         the journal directory (default: \(RunJournalDirectory.defaultPath)).
                                One run at a time per directory (flock on DIR/lock; a second one is
                                refused naming the holder's pid). DIR/journal.jsonl is the current
                                run; finished runs move to DIR/runs/ when the next one starts.
          --yes                 confirm steps pass without asking; rollback does not ask. Without
                                it, a confirm step asks on the terminal (type yes), and with a
                                standard input that is not a terminal it fails instead of waiting.
          --accept-data-loss    rollback: undo steps past the point of no return anyway.
          --json                plan and status: print the report as one JSON object (snake_case).
                                status --json has at least runbook, state, steps [{index, kind,
                                status}] and failed_step {index, kind, reason} when one failed.

        Exit status: 0 completed (the run, rollback or resume; plan: every check passed; status:
        the journal was read); 1 failed (the message says which step, why, and what was undone);
        2 usage error or a refused runbook (file, key path and reason; nothing was run).
        """

    static let valued: Set<String> = ["--set", "--journal"]

    static func run(_ words: [String]) throws -> Int32 {
        let arguments = try Arguments(words, valued: valued)
        guard let action = arguments.positionals.first else { throw UsageError("missing plan, run, status, rollback or resume") }
        let rest = Array(arguments.positionals.dropFirst())
        let directory = RunJournalDirectory(path: arguments.value("--journal") ?? RunJournalDirectory.defaultPath)
        let executor = StepExecutor(assumeYes: arguments.has("--yes"))
        let runner = RunbookRunner(directory: directory, executor: executor, output: { FileHandle.standardOutput.write(Data(($0 + "\n").utf8)) })
        switch action {
        case "plan":
            try arguments.rejectUnknown(flags: ["--json"])
            try noJournal(arguments, action)
            guard let runbook = try load(rest, arguments) else { return 2 }
            var plan = RunbookPlan(runbook)
            let fleets = runner.fleets(runbook)
            if !fleets.isEmpty { plan.fleets = fleets }
            let (failures, notes) = runner.checks(runbook)
            if arguments.has("--json") {
                say(encode(PlanAnswer(plan: plan, checksPassed: failures.isEmpty, checkFailures: failures, checkNotes: notes)))
            } else {
                say(plan.text)
                for note in notes { say("note: \(note)") }
                say(failures.isEmpty ? "checks: all passed" : "checks FAILED:\n" + failures.map { "  \($0)" }.joined(separator: "\n"))
            }
            return failures.isEmpty ? 0 : 1
        case "run":
            try arguments.rejectUnknown(flags: ["--yes"])
            guard let runbook = try load(rest, arguments) else { return 2 }
            return report(try perform { () throws(RunbookRunError) in try runner.run(runbook) })
        case "status":
            try arguments.rejectUnknown(flags: ["--json"])
            try noRunbook(rest, arguments, action)
            guard let state = try runner.status() else { throw RunbookRunError.noRun(directory: directory.path) }
            let status = RunStatusReport(state)
            say(arguments.has("--json") ? encode(status) : status.text)
            return 0
        case "rollback":
            try arguments.rejectUnknown(flags: ["--yes", "--accept-data-loss"])
            try noRunbook(rest, arguments, action)
            let yes = arguments.has("--yes")
            return report(try perform { () throws(RunbookRunError) in
                try runner.rollback(acceptDataLoss: arguments.has("--accept-data-loss"), confirm: { question in ask(question, yes: yes) })
            })
        case "resume":
            try arguments.rejectUnknown(flags: ["--yes"])
            try noRunbook(rest, arguments, action)
            return report(try perform { () throws(RunbookRunError) in try runner.resume() })
        default:
            throw UsageError("expected plan, run, status, rollback or resume, not '\(action)'")
        }
    }

    /// The runbook named by the one positional, or `nil` after printing why it was refused.
    static func load(_ rest: [String], _ arguments: Arguments) throws(UsageError) -> Runbook? {
        guard let path = rest.first else { throw UsageError("missing RUNBOOK (a runbook JSON file)") }
        guard rest.count == 1 else { throw UsageError("unexpected '\(rest[1])'") }
        guard let data = FileManager.default.contents(atPath: path) else {
            printError("cutover upgrade: \(path): cannot read the runbook")
            return nil
        }
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        let folder = (absolute as NSString).deletingLastPathComponent
        do {
            return try Runbook.load(Array(data), file: path, baseDirectory: folder, settings: arguments.values("--set"))
        } catch {
            printError("cutover upgrade: \(error)\nnothing was run")
            return nil
        }
    }

    static func noRunbook(_ rest: [String], _ arguments: Arguments, _ action: String) throws(UsageError) {
        if let extra = rest.first { throw UsageError("\(action) takes no RUNBOOK ('\(extra)'): it reads the journal") }
        if !arguments.values("--set").isEmpty { throw UsageError("\(action) takes no --set: the journal holds the parameters") }
    }

    static func noJournal(_ arguments: Arguments, _ action: String) throws(UsageError) {
        if arguments.value("--journal") != nil { throw UsageError("\(action) takes no --journal: it writes nothing") }
    }

    static func perform(_ body: () throws(RunbookRunError) -> RunbookRunner.Outcome) -> RunbookRunner.Outcome {
        do {
            return try body()
        } catch {
            return RunbookRunner.Outcome(completed: false, summary: "cutover upgrade: \(error)")
        }
    }

    static func report(_ outcome: RunbookRunner.Outcome) -> Int32 {
        if outcome.completed {
            say(outcome.summary)
            return 0
        }
        printError(outcome.summary)
        return 1
    }

    /// Writes a line to standard output unbuffered, so progress lines and a killed runner's output agree.
    static func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    /// Asks `question` on the terminal; `--yes` answers it, and a non-terminal stdin refuses.
    static func ask(_ question: String, yes: Bool) -> Bool {
        if yes { return true }
        guard isatty(0) == 1 else {
            printError("cutover upgrade: \(question)\nstandard input is not a terminal; pass --yes to go ahead without asking")
            return false
        }
        FileHandle.standardOutput.write(Data("\(question) Type yes to continue: ".utf8))
        return readLine()?.trimmingCharacters(in: .whitespaces) == "yes"
    }

    /// `plan --json`: the report and the checks.
    struct PlanAnswer: Encodable {
        var plan: RunbookPlan
        var checksPassed: Bool
        var checkFailures: [String]
        var checkNotes: [String]
    }

    static func encode<T: Encodable>(_ value: T) -> String { JSONCoding.line(value) }
}
