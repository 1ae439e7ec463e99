import CutoverCore

/// The db-* step kinds, wired to the database step API (`DatabaseStep`, Sources/CutoverAgent/Database).
///
/// A journal holds `StepAction`s, not `DatabaseStep` values, so each undo is written back as the
/// runbook action that performs it (a copy's undo is a `db-drop` of the copy, only if cutover made it).
enum DatabaseSteps {
    /// The `DatabaseStep` that performs `action`.
    static func make(_ action: StepAction) throws(StepFailure) -> any DatabaseStep {
        do throws(DatabaseError) {
            switch action {
            case .dbCopy(let from, let to, let method):
                return DatabaseCopy(source: try ConnectionString(from), target: try ConnectionString(to),
                                    method: DatabaseCopy.Method(rawValue: method) ?? .automatic)
            case .dbPromote(let standby, let primary):
                return StandbyPromotion(standby: try ConnectionString(standby), primary: try primary.map { (text) throws(DatabaseError) in try ConnectionString(text) })
            case .dbRun(let dsn, let file, let transactional, let undoFile):
                return Migration(database: try ConnectionString(dsn), file: file, transactional: transactional, undoFile: undoFile)
            case .dbRename(let dsn, let renames):
                return DatabaseRename(server: try ConnectionString(dsn), renames: renames.map { (from: $0.name, to: $0.value) })
            case .dbDrop(let dsn, let name, let force):
                return DatabaseDrop(server: try ConnectionString(dsn), name: name, onlyIfCreatedByCutover: !force)
            case .schemaCheck(let dsn, let fingerprint, let query, let expect):
                return SchemaCheck(database: try ConnectionString(dsn), expectedFingerprint: fingerprint, versionQuery: query, expectedVersion: expect)
            case .switchTo, .setEndpoint, .pause, .resume, .maintenance, .readOnly, .waitHealthy, .waitDrained, .waitIdle, .checkEndpoint, .dbReadOnly,
                 .dbAllowConnections, .flag, .exec, .confirm, .sleep, .wait:
                preconditionFailure("\(action.kind) is not a DatabaseStep")
            }
        } catch {
            throw StepFailure("\(action.kind): \(error)")
        }
    }

    /// The undo, as runbook actions, matching each step's `undoStep`.
    static func undo(for action: StepAction) throws(StepFailure) -> RunbookUndo {
        switch action {
        case .dbCopy(let from, let to, _):
            // A template copy refuses connections to its source while it runs; killed midway it
            // leaves them refused, so the undo gives them back when the source had them before.
            do throws(DatabaseError) {
                let source = try ConnectionString(from)
                let target = try ConnectionString(to)
                let control = try ControlSession(source, controlDatabase: "postgres")
                let allowed = try control.database(source.database)?.allowsConnections ?? true
                // Absent now, the target can only come from this step; killed between CREATE DATABASE
                // and its COMMENT it has no cutover comment yet, so the drop must not ask for one.
                let absent = try ControlSession(target, controlDatabase: "postgres").database(target.database) == nil
                let drop = StepAction.dbDrop(dsn: to, name: target.database, force: absent)
                return .actions(allowed ? [.dbAllowConnections(dsn: from, database: source.database), drop] : [drop])
            } catch {
                throw StepFailure("db-copy: \(error)")
            }
        case .dbPromote:
            return .impossible(reason: "a promoted standby cannot become a standby again")
        case .dbRun(let dsn, _, _, let undoFile):
            guard let undoFile else { return .impossible(reason: "the step gives no undo_file") }
            return .actions([.dbRun(dsn: dsn, file: undoFile, transactional: nil, undoFile: nil)])
        case .dbRename(let dsn, let renames):
            return .actions([.dbRename(dsn: dsn, renames: renames.reversed().map { NamedValue(name: $0.value, value: $0.name) })])
        case .dbDrop(_, let name, _):
            return .impossible(reason: "database \(name) is gone")
        case .schemaCheck:
            return .nothing
        case .switchTo, .setEndpoint, .pause, .resume, .maintenance, .readOnly, .waitHealthy, .waitDrained, .waitIdle, .checkEndpoint, .dbReadOnly,
             .dbAllowConnections, .flag, .exec, .confirm, .sleep, .wait:
            preconditionFailure("\(action.kind) is not a DatabaseStep")
        }
    }

    static func perform(_ action: StepAction) throws(StepFailure) -> String {
        let step = try make(action)
        do {
            let report = try step.apply()
            let details = report.details.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            return report.summary + (details.isEmpty ? "" : " (\(details.joined(separator: ", ")))")
        } catch {
            throw StepFailure("\(step.description): \(error)")
        }
    }

    static func isApplied(_ action: StepAction) throws(StepFailure) -> Bool? {
        let step = try make(action)
        do { return try step.isApplied() } catch { throw StepFailure("\(step.description): \(error)") }
    }

    static func preflight(_ action: StepAction) -> [String] {
        do {
            return try make(action).preflight()
        } catch {
            return [error.description]
        }
    }

    /// The database names a step brings into existence (a copy's target, a rename's new names), so
    /// plan does not check later steps against a database that does not exist yet.
    static func createdDatabases(_ action: StepAction) -> [String] {
        switch action {
        case .dbCopy(_, let to, _): return (try? ConnectionString(to)).map { [$0.database] } ?? []
        case .dbRename(_, let renames): return renames.map(\.value)
        case .switchTo, .setEndpoint, .pause, .resume, .maintenance, .readOnly, .waitHealthy, .waitDrained, .waitIdle, .checkEndpoint, .dbReadOnly,
             .dbPromote, .dbRun, .dbDrop, .schemaCheck, .dbAllowConnections, .flag, .exec, .confirm, .sleep, .wait:
            return []
        }
    }

    /// The databases a step reads or changes by name.
    static func databasesUsed(_ action: StepAction) -> [String] {
        func name(_ dsn: String) -> [String] { (try? ConnectionString(dsn)).map { [$0.database] } ?? [] }
        switch action {
        case .dbReadOnly(let dsn, _, _, _, _), .dbRun(let dsn, _, _, _), .schemaCheck(let dsn, _, _, _): return name(dsn)
        case .dbCopy(let from, _, _): return name(from)
        case .dbPromote(let standby, _): return name(standby)
        case .dbRename(_, let renames): return renames.map(\.name)
        case .dbDrop(_, let database, _): return [database]
        case .switchTo, .setEndpoint, .pause, .resume, .maintenance, .readOnly, .waitHealthy, .waitDrained, .waitIdle, .checkEndpoint,
             .dbAllowConnections, .flag, .exec, .confirm, .sleep, .wait:
            return []
        }
    }

    /// `ALTER DATABASE … ALLOW_CONNECTIONS true` on the server of `dsn` (idempotent).
    static func allowConnections(dsn: String, database: String) throws(StepFailure) -> String {
        do throws(DatabaseError) {
            let control = try ControlSession(try ConnectionString(dsn), controlDatabase: "postgres")
            guard let info = try control.database(database) else { return "database \(database) does not exist" }
            if info.allowsConnections { return "database \(database) already allows connections" }
            try control.setAllowConnections(database, true)
            return "database \(database) allows connections again"
        } catch {
            throw StepFailure("allow connections to \(database): \(error)")
        }
    }
}
