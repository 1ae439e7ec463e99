/// A flag kept in the application's database by configured statements, e.g. an upsert into a
/// settings table the application reads, optionally followed by `NOTIFY`.
public struct SQLFlag: FlagDriver {
    public let connectionString: ConnectionString
    public var onSQL: String
    public var offSQL: String
    /// Returns one value; `on`, `true`, `t`, `1`, `yes` mean on. `nil`: status is `unknown`.
    public var statusSQL: String?
    public var connectTimeout: Duration = .seconds(5)

    public init(connectionString: ConnectionString, onSQL: String, offSQL: String, statusSQL: String?) {
        self.connectionString = connectionString
        self.onSQL = onSQL
        self.offSQL = offSQL
        self.statusSQL = statusSQL
    }

    public var kind: String { "sql" }
    public var target: String { "sql \(connectionString.database)" }

    public func on() throws(FlagError) -> FlagResult { try run(onSQL, action: "on") }
    public func off() throws(FlagError) -> FlagResult { try run(offSQL, action: "off") }

    public func status() throws(FlagError) -> FlagResult {
        do throws(DatabaseError) {
            let session = try PostgresConnection(connectionString, connectTimeout: connectTimeout)
            return try read(session, action: "status")
        } catch {
            throw .database(error)
        }
    }

    /// Runs the statements in one transaction (several statements in one string are allowed), then reads the state.
    private func run(_ sql: String, action: String) throws(FlagError) -> FlagResult {
        do throws(DatabaseError) {
            let session = try PostgresConnection(connectionString, connectTimeout: connectTimeout)
            try session.query("BEGIN")
            try session.query(sql)
            try session.query("COMMIT")
            var result = try read(session, action: action)
            if statusSQL == nil { result.state = action }
            return result
        } catch {
            throw .database(error)
        }
    }

    private func read(_ session: PostgresConnection, action: String) throws(DatabaseError) -> FlagResult {
        guard let statusSQL else {
            return FlagResult(driver: kind, target: target, action: action, state: "unknown", detail: "no status statement configured")
        }
        let value = try session.scalar(statusSQL)
        let state = value.map { SettingText.isOn($0.trimmingWhitespace()) ? "on" : "off" } ?? "off"
        return FlagResult(driver: kind, target: target, action: action, state: state, detail: "status query returned \(value ?? "no row")")
    }
}
