/// Turns one substituted step object into a `RunbookStep`, refusing unknown keys and bad values.
struct RunbookStepDecoder {
    let file: String
    /// Folder of the runbook: relative `file` and `undo_file` paths are resolved against it.
    let baseDirectory: String

    static let proxyKeys = ["socket", "profile"]
    /// Each kind's own keys (besides `Runbook.commonStepKeys`), in documented order.
    static let kindKeys: [String: [String]] = [
        "switch": proxyKeys + ["endpoint", "wait", "force", "guard"],
        "set-endpoint": proxyKeys + ["endpoint", "state", "priority", "weight"],
        "pause": proxyKeys,
        "resume": proxyKeys,
        "maintenance": proxyKeys + ["mode"],
        "readonly": proxyKeys + ["mode"],
        "wait-healthy": proxyKeys + ["endpoint"],
        "wait-drained": proxyKeys + ["endpoint"],
        "wait-idle": proxyKeys + ["requests"],
        "check-endpoint": proxyKeys + ["endpoint", "admin"],
        "db-readonly": ["dsn", "mode", "grace", "control_db", "agent", "lease"],
        "db-copy": ["from", "to", "method"],
        "db-promote": ["standby", "primary"],
        "db-run": ["dsn", "file", "transactional", "undo_file"],
        "db-rename": ["dsn", "renames"],
        "db-drop": ["dsn", "name", "force"],
        "schema-check": ["dsn", "fingerprint", "version_query", "expect"],
        "flag": ["mode", "driver"] + flagOptionKeys,
        "exec": ["command", "undo", "env"],
        "confirm": ["prompt"],
        "sleep": ["duration"],
        "wait": ["command", "interval"],
    ]
    /// `cutover flag` options without their dashes (`on-sql`), also accepted in snake_case (`on_sql`).
    static let flagOptionKeys = ["path", "content", "dsn", "on-sql", "off-sql", "status-sql", "on_sql", "off_sql", "status_sql", "socket", "profile", "gate"]

    func decode(_ value: JSONValue, index: Int, path: String) throws(RunbookError) -> RunbookStep {
        let probe = try RunbookObject(value, path: path, file: file, keys: nil)
        let kind = try probe.required("kind", probe.string)
        guard let own = Self.kindKeys[kind] else {
            throw probe.error("kind", "unknown step kind \"\(kind)\"; expected one of: \(StepAction.kinds.joined(separator: ", "))")
        }
        let object = try RunbookObject(value, path: path, file: file, keys: Runbook.commonStepKeys + own)
        let action = try decodeAction(kind, object)
        var timeoutMs = StepAction.defaultTimeoutMs(kind: kind)
        if let timeout = try object.duration("timeout") { timeoutMs = timeout }
        if case .switchTo(_, _, _, _, _, let guardMs?) = action {
            // The step lasts the window: the default bound is on top of it, a given one must cover it.
            if object.value("timeout") == nil {
                timeoutMs = (timeoutMs ?? 0) + guardMs
            } else if let timeoutMs, timeoutMs <= guardMs {
                throw object.error("timeout", "\(DurationText.format(.milliseconds(timeoutMs))) does not cover the guard window of \(DurationText.format(.milliseconds(guardMs)))")
            }
        }
        if case .sleep(let ms) = action, object.value("timeout") == nil { timeoutMs = ms }
        let pointOfNoReturn = try object.bool("point_of_no_return") ?? false
        let dataLoss = try object.string("data_loss")
        if dataLoss != nil && !pointOfNoReturn {
            throw object.error("data_loss", "only a step with \"point_of_no_return\": true loses data on rollback")
        }
        // The step is decoded whole even when it will be skipped: a typo is refused either way.
        let skipped = try object.string("when").flatMap(Self.skipReason)
        return RunbookStep(index: index, action: action, title: try object.string("title"), timeoutMs: timeoutMs,
                           pointOfNoReturn: pointOfNoReturn, dataLoss: dataLoss, skipped: skipped)
    }

    /// Why a step whose `when` resolved to `value` is skipped, or `nil` when it runs: empty, `false`,
    /// `no` and `0` skip (a parameter left at its empty default, typically).
    static func skipReason(_ value: String) -> String? {
        switch value.lowercased() {
        case "", "false", "no", "0": return "when is \"\(value)\""
        default: return nil
        }
    }

    private func decodeAction(_ kind: String, _ o: RunbookObject) throws(RunbookError) -> StepAction {
        func socket() throws(RunbookError) -> String { try o.required("socket", o.string) }
        func profile() throws(RunbookError) -> String { try o.required("profile", o.string) }
        func onOff() throws(RunbookError) -> Bool {
            let mode = try o.required("mode", o.string)
            switch mode {
            case "on": return true
            case "off": return false
            default: throw o.error("mode", "\"\(mode)\" is not a mode; expected one of: on, off")
            }
        }
        switch kind {
        case "switch":
            // An empty guard (a parameter left at its default "") is no guard.
            let guardMs = try o.string("guard").flatMap { $0.isEmpty ? nil : $0 } == nil ? nil : try o.duration("guard")
            return .switchTo(socket: try socket(), profile: try profile(), endpoint: try o.required("endpoint", o.string),
                             wait: try o.bool("wait") ?? false, force: try o.bool("force") ?? false, guardMs: guardMs)
        case "set-endpoint":
            let state = try o.string("state")
            if let state, !["online", "offline", "drain"].contains(state) {
                throw o.error("state", "\"\(state)\" is not an endpoint state; expected one of: online, offline, drain")
            }
            let priority = try o.int("priority")
            let weight = try o.int("weight")
            if let priority, priority < 0 { throw o.error("priority", "must be ≥ 0") }
            if let weight, !(0...1000).contains(weight) { throw o.error("weight", "must be 0...1000") }
            guard state != nil || priority != nil || weight != nil else {
                throw o.error("", "set-endpoint needs at least one of: state, priority, weight")
            }
            return .setEndpoint(socket: try socket(), profile: try profile(), endpoint: try o.required("endpoint", o.string),
                                state: state, priority: priority, weight: weight)
        case "pause": return .pause(socket: try socket(), profile: try profile())
        case "resume": return .resume(socket: try socket(), profile: try profile())
        case "maintenance": return .maintenance(socket: try socket(), profile: try profile(), on: try onOff())
        case "readonly":
            let mode = try o.required("mode", o.string)
            guard let gate = ReadOnlyGate(rawValue: mode) else {
                throw o.error("mode", "\"\(mode)\" is not a readonly mode; expected one of: on, off, hold")
            }
            return .readOnly(socket: try socket(), profile: try profile(), mode: gate)
        case "wait-healthy": return .waitHealthy(socket: try socket(), profile: try profile(), endpoint: try o.required("endpoint", o.string))
        case "wait-drained": return .waitDrained(socket: try socket(), profile: try profile(), endpoint: try o.required("endpoint", o.string))
        case "wait-idle":
            let requests = try o.string("requests") ?? "all"
            guard requests == "all" || requests == "writes" else {
                throw o.error("requests", "\"\(requests)\" is not a request kind; expected one of: all, writes")
            }
            return .waitIdle(socket: try socket(), profile: try profile(), writesOnly: requests == "writes")
        case "check-endpoint":
            let admin = try o.required("admin", o.string)
            guard ["online", "offline", "draining"].contains(admin) else {
                throw o.error("admin", "\"\(admin)\" is not an admin state; expected one of: online, offline, draining")
            }
            return .checkEndpoint(socket: try socket(), profile: try profile(), endpoint: try o.required("endpoint", o.string), admin: admin)
        case "db-readonly":
            let agentKey = try o.string("agent")
            let leaseMs = try o.duration("lease")
            if leaseMs != nil && agentKey == nil {
                throw o.error("lease", "a lease is held by an agent; give its admin socket as \"agent\"")
            }
            if let leaseMs, leaseMs < 1000 {
                throw o.error("lease", "\(DurationText.format(.milliseconds(leaseMs))) is too short; a lease is renewed every third of it, use 1s or more")
            }
            // An empty agent (a parameter left at its default "") fences directly, as without the key.
            let agent = agentKey.flatMap { $0.isEmpty ? nil : $0 }
            return .dbReadOnly(dsn: try o.required("dsn", o.string), on: try onOff(), graceMs: try o.duration("grace") ?? 2000,
                               controlDatabase: try o.string("control_db"),
                               lease: agent.map { FenceLease(agent: $0, leaseMs: leaseMs ?? 30_000) })
        case "db-copy":
            let method = try o.string("method") ?? "auto"
            guard ["auto", "template", "dump"].contains(method) else {
                throw o.error("method", "\"\(method)\" is not a copy method; expected one of: auto, template, dump")
            }
            return .dbCopy(from: try o.required("from", o.string), to: try o.required("to", o.string), method: method)
        case "db-promote": return .dbPromote(standby: try o.required("standby", o.string), primary: try o.string("primary"))
        case "db-run":
            return .dbRun(dsn: try o.required("dsn", o.string), file: absolute(try o.required("file", o.string)),
                          transactional: try o.bool("transactional"), undoFile: try o.string("undo_file").map(absolute))
        case "db-rename":
            guard let value = o.value("renames") else { throw o.error("renames", "required key is missing") }
            guard case .array(let elements) = value, !elements.isEmpty else { throw o.error("renames", "expected a non-empty array of {from, to}") }
            var renames: [NamedValue] = []
            for (i, element) in elements.enumerated() {
                let pair = try RunbookObject(element, path: o.path("renames[\(i)]"), file: file, keys: ["from", "to"])
                renames.append(NamedValue(name: try pair.required("from", pair.string), value: try pair.required("to", pair.string)))
            }
            return .dbRename(dsn: try o.required("dsn", o.string), renames: renames)
        case "db-drop":
            return .dbDrop(dsn: try o.required("dsn", o.string), name: try o.required("name", o.string), force: try o.bool("force") ?? false)
        case "schema-check":
            let fingerprint = try o.string("fingerprint")
            let query = try o.string("version_query")
            let expect = try o.string("expect")
            guard fingerprint != nil || query != nil else { throw o.error("", "schema-check needs fingerprint or version_query") }
            if query != nil && expect == nil { throw o.error("expect", "required with version_query") }
            return .schemaCheck(dsn: try o.required("dsn", o.string), fingerprint: fingerprint, versionQuery: query, expect: expect)
        case "flag":
            let driver = try o.required("driver", o.string)
            guard ["file", "sql", "proxy"].contains(driver) else {
                throw o.error("driver", "\"\(driver)\" is not a flag driver; expected one of: file, sql, proxy")
            }
            var options: [NamedValue] = []
            for key in Self.flagOptionKeys {
                // One spelling per option: `on_sql` is read as `on-sql`.
                if let value = try o.string(key) { options.append(NamedValue(name: key.replacingUnderscores, value: value)) }
            }
            return .flag(on: try onOff(), driver: driver, options: options)
        case "exec":
            let command = try o.required("command", o.argv)
            let undo = try o.argv("undo")
            var env: [NamedValue] = []
            if let value = o.value("env") {
                guard case .object(let members) = value else { throw o.error("env", "expected an object of strings, got \(value.kindDescription)") }
                for member in members {
                    guard case .string(let text) = member.value else { throw o.error("env.\(member.key)", "expected a string, got \(member.value.kindDescription)") }
                    env.append(NamedValue(name: member.key, value: text))
                }
            }
            return .exec(command: command, undo: undo, env: env)
        case "confirm": return .confirm(prompt: try o.required("prompt", o.string))
        case "sleep": return .sleep(durationMs: try o.required("duration", o.duration))
        case "wait": return .wait(command: try o.required("command", o.argv), intervalMs: try o.duration("interval") ?? 1000)
        default:
            preconditionFailure("kindKeys and decodeAction list the same kinds")
        }
    }

    private func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : (baseDirectory.hasSuffix("/") ? baseDirectory + path : baseDirectory + "/" + path)
    }
}

extension String {
    fileprivate var replacingUnderscores: String { String(map { $0 == "_" ? "-" : $0 }) }
}

/// One JSON object of a runbook, its key path and file, with typed readers whose errors name both.
struct RunbookObject {
    let members: [JSONMember]
    let basePath: String
    let file: String

    /// Checks that `value` is an object whose keys are all in `keys` (`nil` allows any key).
    init(_ value: JSONValue, path: String, file: String, keys: [String]?) throws(RunbookError) {
        guard case .object(let members) = value else {
            throw RunbookError(file: file, key: path, reason: "expected an object, got \(value.kindDescription)")
        }
        self.members = members
        self.basePath = path
        self.file = file
        if let keys {
            for member in members where !keys.contains(member.key) {
                throw RunbookError(file: file, key: self.path(member.key), reason: "unknown key; expected one of: \(keys.joined(separator: ", "))")
            }
        }
    }

    func path(_ key: String) -> String {
        key.isEmpty ? basePath : basePath.isEmpty ? key : "\(basePath).\(key)"
    }

    func error(_ key: String, _ reason: String) -> RunbookError {
        RunbookError(file: file, key: path(key), reason: reason)
    }

    /// The value of `key`, `nil` when absent or `null`.
    func value(_ key: String) -> JSONValue? {
        guard let value = members.first(where: { $0.key == key })?.value, value != .null else { return nil }
        return value
    }

    func required<T>(_ key: String, _ read: (String) throws(RunbookError) -> T?) throws(RunbookError) -> T {
        guard let value = try read(key) else { throw error(key, "required key is missing") }
        return value
    }

    func string(_ key: String) throws(RunbookError) -> String? {
        guard let value = value(key) else { return nil }
        guard case .string(let text) = value else { throw error(key, "expected a string, got \(value.kindDescription)") }
        return text
    }

    func bool(_ key: String) throws(RunbookError) -> Bool? {
        guard let value = value(key) else { return nil }
        guard case .bool(let flag) = value else { throw error(key, "expected true or false, got \(value.kindDescription)") }
        return flag
    }

    func int(_ key: String) throws(RunbookError) -> Int? {
        guard let value = value(key) else { return nil }
        guard case .number(let literal) = value, let number = Int(literal) else { throw error(key, "expected an integer, got \(value.kindDescription)") }
        return number
    }

    /// A duration string (`500ms`, `2s`, `10m`) as milliseconds.
    func duration(_ key: String) throws(RunbookError) -> Int64? {
        guard let text = try string(key) else { return nil }
        guard let duration = DurationText.parse(text) else { throw error(key, "\"\(text)\" is not a duration (e.g. 500ms, 2s, 10m)") }
        return duration.milliseconds
    }

    /// A non-empty array of strings: a program and its arguments.
    func argv(_ key: String) throws(RunbookError) -> [String]? {
        guard let value = value(key) else { return nil }
        guard case .array(let elements) = value, !elements.isEmpty else {
            throw error(key, "expected a non-empty array of strings (the program and its arguments)")
        }
        var words: [String] = []
        for (i, element) in elements.enumerated() {
            guard case .string(let word) = element else { throw error("\(key)[\(i)]", "expected a string, got \(element.kindDescription)") }
            words.append(word)
        }
        return words
    }
}
