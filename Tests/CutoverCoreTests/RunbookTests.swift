import CutoverCore
import XCTest

/// Parsing, `${name}` substitution, `--set`, and every refusal with its key path.
final class RunbookTests: XCTestCase {
    static let sample = """
        {
          "name": "blue-green",
          "description": "pause, switch, resume",
          "params": {
            "socket": { "description": "admin socket", "default": "/run/cutover/admin.sock" },
            "profile": { "default": "web" },
            "green": {},
            "stage": { "default": "${primary}_v2" },
            "primary": { "default": "app" }
          },
          "steps": [
            { "kind": "pause", "socket": "${socket}", "profile": "${profile}", "title": "hold" },
            { "kind": "switch", "socket": "${socket}", "profile": "${profile}", "endpoint": "${green}", "wait": true, "timeout": "30s" },
            { "kind": "db-run", "dsn": "dbname=${stage}", "file": "migrations/001.sql" },
            { "kind": "exec", "command": ["echo", "$${literal}", "${green}"], "undo": ["true"], "env": {"PGHOST": "/tmp"} },
            { "kind": "readonly", "socket": "${socket}", "profile": "${profile}", "mode": "off",
              "point_of_no_return": true, "data_loss": "writes to ${stage}" },
            { "kind": "resume", "socket": "${socket}", "profile": "${profile}" }
          ]
        }
        """

    func load(_ text: String = sample, _ settings: [String] = ["green=g"]) throws(RunbookError) -> Runbook {
        try Runbook.load(Array(text.utf8), file: "rb.json", baseDirectory: "/srv/rb", settings: settings)
    }

    func refusal(_ text: String, _ settings: [String] = ["green=g"]) -> RunbookError? {
        do {
            _ = try load(text, settings)
            return nil
        } catch {
            return error
        }
    }

    func testSample_resolvesParamsDefaultsAndSubstitution() throws {
        let runbook = try load()
        XCTAssertEqual(runbook.name, "blue-green")
        XCTAssertEqual(runbook.params.map(\.name), ["socket", "profile", "green", "stage", "primary"])
        XCTAssertEqual(runbook.params.first { $0.name == "stage" }?.value, "app_v2")
        XCTAssertEqual(runbook.steps[0].action, .pause(socket: "/run/cutover/admin.sock", profile: "web"))
        XCTAssertEqual(runbook.steps[0].title, "hold")
        XCTAssertEqual(runbook.steps[0].timeoutMs, 10_000)
        XCTAssertEqual(runbook.steps[1].action, .switchTo(socket: "/run/cutover/admin.sock", profile: "web", endpoint: "g", wait: true, force: false))
        XCTAssertEqual(runbook.steps[1].timeoutMs, 30_000)
        XCTAssertEqual(runbook.steps[2].action, .dbRun(dsn: "dbname=app_v2", file: "/srv/rb/migrations/001.sql", transactional: nil, undoFile: nil))
        XCTAssertEqual(runbook.steps[3].action, .exec(command: ["echo", "${literal}", "g"], undo: ["true"], env: [NamedValue(name: "PGHOST", value: "/tmp")]))
        XCTAssertTrue(runbook.steps[4].pointOfNoReturn)
        XCTAssertEqual(runbook.steps[4].dataLoss, "writes to app_v2")
    }

    func testSet_overridesDefault_andLaterWins() throws {
        let runbook = try load(Self.sample, ["green=g", "primary=x", "primary=y"])
        XCTAssertEqual(runbook.params.first { $0.name == "stage" }?.value, "y_v2")
    }

    func testUnsetRequiredParam_isRefusedNamingIt() {
        XCTAssertEqual(refusal(Self.sample, []), RunbookError(file: "rb.json", key: "params.green", reason: "required parameter is not set; give it with --set green=VALUE"))
    }

    func testUnknownSet_isRefused() {
        let error = refusal(Self.sample, ["green=g", "gren=x"])
        XCTAssertEqual(error?.key, "--set gren")
        XCTAssertTrue(error?.reason.contains("declares no parameter \"gren\"") ?? false)
    }

    func testMalformedSet_isRefused() {
        XCTAssertEqual(refusal(Self.sample, ["green"])?.key, "--set green")
    }

    func step(_ body: String, params: String = "") -> String {
        "{\"name\": \"t\", \"params\": {\(params)}, \"steps\": [{\"kind\": \"pause\", \"socket\": \"s\", \"profile\": \"p\"}, \(body)]}"
    }

    func testErrors_nameTheKeyPath() {
        let cases: [(String, String, String)] = [
            (step("{\"kind\": \"paws\"}"), "steps[1].kind", "unknown step kind \"paws\""),
            (step("{\"kind\": \"pause\", \"socket\": \"s\", \"profile\": \"p\", \"mode\": \"on\"}"), "steps[1].mode", "unknown key"),
            (step("{\"kind\": \"readonly\", \"socket\": \"s\", \"profile\": \"p\", \"mode\": \"hld\"}"), "steps[1].mode", "not a readonly mode"),
            (step("{\"kind\": \"pause\", \"socket\": \"s\"}"), "steps[1].profile", "required key is missing"),
            (step("{\"kind\": \"sleep\", \"duration\": \"5 minutes\"}"), "steps[1].duration", "not a duration"),
            (step("{\"kind\": \"sleep\", \"duration\": \"1s\", \"timeout\": 5}"), "steps[1].timeout", "expected a string"),
            (step("{\"kind\": \"exec\", \"command\": []}"), "steps[1].command", "non-empty array"),
            (step("{\"kind\": \"exec\", \"command\": [\"a\", 1]}"), "steps[1].command[1]", "expected a string"),
            (step("{\"kind\": \"exec\", \"command\": [\"${nope}\"]}"), "steps[1].command[0]", "unknown parameter ${nope}"),
            (step("{\"kind\": \"confirm\", \"prompt\": \"${x\"}"), "steps[1].prompt", "unterminated ${"),
            (step("{\"kind\": \"db-copy\", \"from\": \"a\", \"to\": \"b\", \"method\": \"rsync\"}"), "steps[1].method", "not a copy method"),
            (step("{\"kind\": \"db-rename\", \"dsn\": \"a\", \"renames\": [{\"from\": \"x\"}]}"), "steps[1].renames[0].to", "required key is missing"),
            (step("{\"kind\": \"flag\", \"mode\": \"on\", \"driver\": \"carrier-pigeon\"}"), "steps[1].driver", "not a flag driver"),
            (step("{\"kind\": \"set-endpoint\", \"socket\": \"s\", \"profile\": \"p\", \"endpoint\": \"e\", \"weight\": 2000}"), "steps[1].weight", "0...1000"),
            (step("{\"kind\": \"sleep\", \"duration\": \"1s\", \"data_loss\": \"x\"}"), "steps[1].data_loss", "point_of_no_return"),
            (step("{\"kind\": \"sleep\", \"duration\": \"1s\"}", params: "\"a\": {\"default\": \"${b}\"}, \"b\": {\"default\": \"${a}\"}"), "params.a.default", "cycle"),
            (step("{\"kind\": \"sleep\", \"duration\": \"1s\"}", params: "\"a\": {\"default\": \"${zz}\"}"), "params.a.default", "unknown parameter ${zz}"),
            (step("{\"kind\": \"sleep\", \"duration\": \"1s\"}", params: "\"a\": {\"defualt\": \"x\"}"), "params.a.defualt", "unknown key"),
            (step("{\"kind\": \"sleep\", \"duration\": \"1s\"}", params: "\"a-b\": {}"), "params.a-b", "letters, digits"),
            ("{\"name\": \"t\", \"steps\": [], \"extra\": 1}", "extra", "unknown key"),
            ("{\"name\": \"t\", \"steps\": []}", "steps", "at least one step"),
            ("{\"steps\": [{\"kind\": \"sleep\", \"duration\": \"1s\"}]}", "name", "required key is missing"),
            ("[1]", "", "top level"),
            ("{\"name\": \"t\", \"name\": \"u\"}", "", "not valid JSON"),
        ]
        for (text, key, reason) in cases {
            guard let error = refusal(text, []) else {
                XCTFail("accepted: \(text)")
                continue
            }
            XCTAssertEqual(error.file, "rb.json")
            XCTAssertEqual(error.key, key, text)
            XCTAssertTrue(error.reason.contains(reason), "\(error) should say \(reason)")
        }
    }

    func testEveryKind_parsesWithItsKeys() throws {
        let steps = """
            {"kind": "switch", "socket": "s", "profile": "p", "endpoint": "e", "force": true},
            {"kind": "set-endpoint", "socket": "s", "profile": "p", "endpoint": "e", "state": "drain", "priority": 2},
            {"kind": "resume", "socket": "s", "profile": "p"},
            {"kind": "maintenance", "socket": "s", "profile": "p", "mode": "on"},
            {"kind": "readonly", "socket": "s", "profile": "p", "mode": "hold"},
            {"kind": "wait-healthy", "socket": "s", "profile": "p", "endpoint": "e"},
            {"kind": "wait-drained", "socket": "s", "profile": "p", "endpoint": "e"},
            {"kind": "wait-idle", "socket": "s", "profile": "p", "requests": "writes"},
            {"kind": "check-endpoint", "socket": "s", "profile": "p", "endpoint": "e", "admin": "offline"},
            {"kind": "db-readonly", "dsn": "d", "mode": "on", "grace": "500ms", "control_db": "template1"},
            {"kind": "db-copy", "from": "a", "to": "b"},
            {"kind": "db-promote", "standby": "s"},
            {"kind": "db-run", "dsn": "d", "file": "/abs.sql", "transactional": false, "undo_file": "undo.sql"},
            {"kind": "db-rename", "dsn": "d", "renames": [{"from": "a", "to": "b"}]},
            {"kind": "db-drop", "dsn": "d", "name": "x", "force": true},
            {"kind": "schema-check", "dsn": "d", "version_query": "select 1", "expect": "1"},
            {"kind": "flag", "mode": "off", "driver": "sql", "dsn": "d", "on_sql": "a", "off-sql": "b"},
            {"kind": "confirm", "prompt": "go?"},
            {"kind": "sleep", "duration": "2s"},
            {"kind": "wait", "command": ["true"], "interval": "100ms", "timeout": "5s"}
            """
        let runbook = try load(step(steps), [])
        XCTAssertEqual(runbook.steps.map(\.kind), ["pause"] + StepAction.kinds.filter { $0 != "pause" && $0 != "exec" })
        XCTAssertEqual(runbook.steps[10].action, .dbReadOnly(dsn: "d", on: true, graceMs: 500, controlDatabase: "template1", lease: nil))
        XCTAssertEqual(runbook.steps[13].action, .dbRun(dsn: "d", file: "/abs.sql", transactional: false, undoFile: "/srv/rb/undo.sql"))
        XCTAssertEqual(runbook.steps[17].action, .flag(on: false, driver: "sql", options: [NamedValue(name: "dsn", value: "d"), NamedValue(name: "off-sql", value: "b"), NamedValue(name: "on-sql", value: "a")]))
        XCTAssertNil(runbook.steps[18].timeoutMs, "confirm waits for a person")
        XCTAssertEqual(runbook.steps[19].timeoutMs, 2000, "sleep is bounded by its duration")
        XCTAssertEqual(runbook.steps[20].timeoutMs, 5000)
    }

    func testPlan_listsUndoPointOfNoReturnAndWindows() throws {
        let text = step("""
            {"kind": "readonly", "socket": "s", "profile": "p", "mode": "hold", "timeout": "1s"},
            {"kind": "db-readonly", "dsn": "dbname=app password=secret", "mode": "on", "timeout": "3s"},
            {"kind": "db-promote", "standby": "dbname=app2", "timeout": "20s"},
            {"kind": "db-readonly", "dsn": "dbname=app password=secret", "mode": "off", "timeout": "4s"},
            {"kind": "readonly", "socket": "s", "profile": "p", "mode": "off", "point_of_no_return": true, "data_loss": "writes to app2"},
            {"kind": "confirm", "prompt": "ok?"}
            """)
        let plan = RunbookPlan(try load(text, []))
        XCTAssertEqual(plan.steps.count, 7)
        XCTAssertTrue(plan.steps[3].undo.hasPrefix("cannot be undone"))
        XCTAssertEqual(plan.steps[0].undo, "resume p")
        XCTAssertTrue(plan.steps[5].pointOfNoReturn)
        XCTAssertEqual(plan.windows, [
            RunbookPlan.Window(what: "proxy p paused", effect: "requests and connections held", fromStep: 0, toStep: nil, maxMs: nil),
            RunbookPlan.Window(what: "proxy p readonly hold", effect: "writes held", fromStep: 1, toStep: 5, maxMs: 3000 + 20_000 + 4000 + 10_000),
            RunbookPlan.Window(what: "database dbname=app password=***", effect: "read-only", fromStep: 2, toStep: 4, maxMs: 24_000),
        ])
        XCTAssertNil(plan.maxTotalMs)
        XCTAssertTrue(plan.text.contains("POINT OF NO RETURN: rolling back past this step loses data: writes to app2"))
        XCTAssertFalse(plan.text.contains("secret"))
        XCTAssertTrue(plan.text.contains("not reopened"))
    }
}

/// `when`, `wait-idle` and `check-endpoint`: what the shipped workflows need beyond the first kinds.
final class RunbookConditionTests: XCTestCase {
    func load(_ steps: String, _ settings: [String] = []) throws(RunbookError) -> Runbook {
        let text = #"{ "name": "w", "params": { "fingerprint": { "default": "" }, "s": { "default": "/s.sock" } }, "steps": [\#(steps)] }"#
        return try Runbook.load(Array(text.utf8), file: "w.json", baseDirectory: "/", settings: settings)
    }

    func testWhen_emptyOrFalseSkips_anythingElseRuns_andSkippedStepsKeepTheirNumbers() throws {
        let steps = #"""
            { "kind": "schema-check", "when": "${fingerprint}", "dsn": "dbname=app", "fingerprint": "${fingerprint}x" },
            { "kind": "pause", "socket": "${s}", "profile": "web", "when": "false" },
            { "kind": "pause", "socket": "${s}", "profile": "web", "when": "yes" },
            { "kind": "resume", "socket": "${s}", "profile": "web" }
            """#
        let skipped = try load(steps)
        XCTAssertEqual(skipped.steps.map(\.skipped), [#"when is """#, #"when is "false""#, nil, nil])
        XCTAssertEqual(skipped.steps.map(\.index), [0, 1, 2, 3])
        let given = try load(steps, ["fingerprint=abc"])
        XCTAssertNil(given.steps[0].skipped)
        XCTAssertEqual(given.steps[0].action, .schemaCheck(dsn: "dbname=app", fingerprint: "abcx", versionQuery: nil, expect: nil))
        let plan = RunbookPlan(skipped)
        XCTAssertEqual(plan.steps[0].skipped, #"when is """#)
        XCTAssertTrue(plan.text.contains(#"1. [schema-check] skipped (when is "")"#), plan.text)
        XCTAssertEqual(plan.windows.map(\.fromStep), [2], "a skipped pause opens no window")
        XCTAssertEqual(plan.maxTotalMs, 20_000, "a skipped step's timeout is not counted")
    }

    func testWhen_aSkippedStepIsStillValidated() {
        XCTAssertThrowsError(try load(#"{ "kind": "pause", "socket": "x", "when": "", "profil": "web" }"#)) {
            XCTAssertEqual(($0 as? RunbookError)?.key, "steps[0].profil", "\($0)")
        }
        XCTAssertThrowsError(try load(#"{ "kind": "pause", "socket": "x", "profile": "web", "when": true }"#)) {
            XCTAssertEqual(($0 as? RunbookError)?.key, "steps[0].when", "\($0)")
        }
    }

    func testWaitIdle_andCheckEndpoint_parseAndRefuseBadValues() throws {
        let runbook = try load(#"""
            { "kind": "wait-idle", "socket": "${s}", "profile": "web", "requests": "writes" },
            { "kind": "wait-idle", "socket": "${s}", "profile": "web" },
            { "kind": "check-endpoint", "socket": "${s}", "profile": "web", "endpoint": "green", "admin": "offline" }
            """#)
        XCTAssertEqual(runbook.steps.map(\.action), [
            .waitIdle(socket: "/s.sock", profile: "web", writesOnly: true),
            .waitIdle(socket: "/s.sock", profile: "web", writesOnly: false),
            .checkEndpoint(socket: "/s.sock", profile: "web", endpoint: "green", admin: "offline"),
        ])
        XCTAssertEqual(runbook.steps.map(\.action.plannedUndo), ["nothing to undo", "nothing to undo", "nothing to undo"])
        XCTAssertThrowsError(try load(#"{ "kind": "wait-idle", "socket": "x", "profile": "web", "requests": "reads" }"#)) {
            XCTAssertEqual(($0 as? RunbookError)?.key, "steps[0].requests", "\($0)")
        }
        XCTAssertThrowsError(try load(#"{ "kind": "check-endpoint", "socket": "x", "profile": "web", "endpoint": "g", "admin": "up" }"#)) {
            XCTAssertEqual(($0 as? RunbookError)?.key, "steps[0].admin", "\($0)")
        }
    }

    /// `switch` with `guard`: the step lasts the window (its default bound is on top), an empty guard
    /// is none, and a given timeout must cover the window.
    func testSwitchGuard_extendsTheBound_andAnEmptyGuardIsNone() throws {
        let runbook = try load(#"""
            { "kind": "switch", "socket": "${s}", "profile": "web", "endpoint": "green", "guard": "30s" },
            { "kind": "switch", "socket": "${s}", "profile": "web", "endpoint": "green", "guard": "${fingerprint}" }
            """#)
        XCTAssertEqual(runbook.steps[0].action, .switchTo(socket: "/s.sock", profile: "web", endpoint: "green", wait: false, force: false, guardMs: 30_000))
        XCTAssertEqual(runbook.steps[0].timeoutMs, StepAction.defaultTimeoutMs(kind: "switch").map { $0 + 30_000 })
        XCTAssertEqual(runbook.steps[1].action, .switchTo(socket: "/s.sock", profile: "web", endpoint: "green", wait: false, force: false, guardMs: nil))
        XCTAssertTrue(runbook.steps[0].action.summary.contains("guarded for 30s"), runbook.steps[0].action.summary)
        XCTAssertThrowsError(try load(#"{ "kind": "switch", "socket": "x", "profile": "web", "endpoint": "g", "guard": "30s", "timeout": "10s" }"#)) {
            XCTAssertEqual(($0 as? RunbookError)?.key, "steps[0].timeout", "\($0)")
        }
        XCTAssertThrowsError(try load(#"{ "kind": "switch", "socket": "x", "profile": "web", "endpoint": "g", "guard": "soon" }"#)) {
            XCTAssertEqual(($0 as? RunbookError)?.key, "steps[0].guard", "\($0)")
        }
    }

    /// `db-readonly` with `agent` and `lease`: leased through the agent (30 s by default); an empty
    /// agent fences directly; a lease without an agent, or under a second, is refused.
    func testDbReadOnlyLease_parsesAndRefusesWhatCannotWork() throws {
        let runbook = try load(#"""
            { "kind": "db-readonly", "dsn": "primary", "mode": "on", "agent": "/run/agent.sock" },
            { "kind": "db-readonly", "dsn": "primary", "mode": "on", "agent": "/run/agent.sock", "lease": "2m" },
            { "kind": "db-readonly", "dsn": "dbname=a", "mode": "on", "agent": "${fingerprint}", "lease": "2m" }
            """#)
        XCTAssertEqual(runbook.steps.map(\.action), [
            .dbReadOnly(dsn: "primary", on: true, graceMs: 2000, controlDatabase: nil, lease: FenceLease(agent: "/run/agent.sock", leaseMs: 30_000)),
            .dbReadOnly(dsn: "primary", on: true, graceMs: 2000, controlDatabase: nil, lease: FenceLease(agent: "/run/agent.sock", leaseMs: 120_000)),
            .dbReadOnly(dsn: "dbname=a", on: true, graceMs: 2000, controlDatabase: nil, lease: nil),
        ])
        XCTAssertTrue(RunbookPlan(runbook).windows.first?.what.contains("agent lease 30s") ?? false)
        for (bad, key) in [(#""lease": "10s""#, "steps[0].lease"), (#""agent": "/a.sock", "lease": "500ms""#, "steps[0].lease")] {
            XCTAssertThrowsError(try load(#"{ "kind": "db-readonly", "dsn": "d", "mode": "on", \#(bad) }"#)) {
                XCTAssertEqual(($0 as? RunbookError)?.key, key, "\($0)")
            }
        }
    }

    /// Every runbook shipped in Deploy/runbooks parses with its required parameters set.
    func testShippedRunbooks_parse() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let folder = root.appendingPathComponent("Deploy/runbooks")
        let required = ["primary=host=db dbname=app", "stage=host=db dbname=app_v2", "replica=host=replica dbname=app",
                        "migration=m.sql", "database=host=db dbname=app", "expand=e.sql", "contract=c.sql"]
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".json") }.sorted()
        XCTAssertEqual(files, ["contract.json", "expand-contract.json", "maintenance-window.json", "replica-promote.json", "stage-copy.json"])
        for file in files {
            let bytes = try Array(Data(contentsOf: folder.appendingPathComponent(file)))
            // Only the parameters the runbook declares: an unknown --set is refused.
            let declared = try Self.declaredParams(bytes)
            let settings = required.filter { declared.contains(String($0.prefix { $0 != "=" })) }
            XCTAssertNoThrow(try Runbook.load(bytes, file: file, baseDirectory: folder.path, settings: settings), file)
        }
    }

    static func declaredParams(_ bytes: [UInt8]) throws -> Set<String> {
        guard case .object(let root) = try JSONValue.parse(bytes), case .object(let params)? = root.first(where: { $0.key == "params" })?.value else { return [] }
        return Set(params.map(\.key))
    }
}
