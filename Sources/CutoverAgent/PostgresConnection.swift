import CLibPQ
import CutoverCore
import Foundation

/// One synchronous libpq session: connect, run statements, read rows of optional strings.
///
/// - Important: not thread-safe; use it from one thread (libpq calls block and never run on a
///   connection queue of the proxy).
public final class PostgresConnection {
    private let handle: OpaquePointer
    /// The connection string this session was opened with (password included, never printed).
    public let connectionString: ConnectionString

    /// Opens a session; `connectTimeout` becomes libpq's `connect_timeout` unless the string sets one.
    public init(_ connectionString: ConnectionString, connectTimeout: Duration = .seconds(5)) throws(DatabaseError) {
        var cs = connectionString
        if cs.value("connect_timeout") == nil {
            // libpq takes whole seconds and treats 1 as 2; never pass 0 (wait forever).
            cs = cs.setting("connect_timeout", to: String(max(2, Int((connectTimeout.seconds).rounded(.up)))))
        }
        if cs.value("application_name") == nil {
            cs = cs.setting("application_name", to: "cutover-agent")
        }
        self.connectionString = cs
        let keys = cs.parameters.map { strdup($0.key) } + [nil]
        let values = cs.parameters.map { strdup($0.value) } + [nil]
        defer {
            keys.forEach { free($0) }
            values.forEach { free($0) }
        }
        let conn: OpaquePointer? = keys.map { UnsafePointer($0) }.withUnsafeBufferPointer { k in
            values.map { UnsafePointer($0) }.withUnsafeBufferPointer { v in
                PQconnectdbParams(k.baseAddress, v.baseAddress, 0)
            }
        }
        guard let conn else { throw .connectionFailed(endpoint: cs.endpoint, message: "out of memory") }
        guard PQstatus(conn) == CONNECTION_OK else {
            let message = String(cString: PQerrorMessage(conn)).trimmingWhitespace()
            PQfinish(conn)
            throw Self.classifyConnectFailure(message, connectionString: cs)
        }
        handle = conn
    }

    deinit { PQfinish(handle) }

    /// Maps libpq's connect failure text to a named error (libpq gives no SQLSTATE before a session exists).
    static func classifyConnectFailure(_ message: String, connectionString cs: ConnectionString) -> DatabaseError {
        let text = message.lowercased()
        let firstLine = message.split(separator: "\n").first.map(String.init) ?? message
        if text.contains("password authentication failed") || text.contains("authentication failed")
            || text.contains("no password supplied") || text.contains("fe_sendauth") || text.contains("28p01")
            || text.contains("no pg_hba.conf entry") || (text.contains("role \"") && text.contains("does not exist"))
        {
            return .authenticationFailed(role: cs.user, message: firstLine)
        }
        if text.contains("database \"") && text.contains("does not exist") {
            return .databaseMissing(database: cs.database, message: firstLine)
        }
        if text.contains("connection refused") || text.contains("timeout expired") || text.contains("could not connect")
            || text.contains("could not translate host name") || text.contains("no route to host")
            || text.contains("network is unreachable") || text.contains("no such file or directory")
            || text.contains("server closed the connection unexpectedly")
        {
            return .unreachable(endpoint: cs.endpoint, message: firstLine)
        }
        return .connectionFailed(endpoint: cs.endpoint, message: firstLine)
    }

    /// True while the session is usable; false after the server terminated it.
    public var isAlive: Bool { PQstatus(handle) == CONNECTION_OK }

    /// The server process id serving this session.
    public var backendPID: Int32 { PQbackendPID(handle) }

    /// Runs `sql` with `$1…` parameters (text format) and returns its rows; `nil` is SQL NULL.
    @discardableResult
    public func query(_ sql: String, _ parameters: [String?] = []) throws(DatabaseError) -> [[String?]] {
        let result: OpaquePointer?
        if parameters.isEmpty {
            result = PQexec(handle, sql)
        } else {
            let values = parameters.map { $0.map { strdup($0) } ?? nil }
            defer { values.forEach { free($0) } }
            result = values.map { UnsafePointer($0) }.withUnsafeBufferPointer { v in
                PQexecParams(handle, sql, Int32(parameters.count), nil, v.baseAddress, nil, nil, 0)
            }
        }
        guard let result else {
            throw lostOrFailed(sqlstate: nil, message: String(cString: PQerrorMessage(handle)))
        }
        defer { PQclear(result) }
        switch PQresultStatus(result) {
        case PGRES_TUPLES_OK:
            let rows = PQntuples(result)
            let columns = PQnfields(result)
            var out: [[String?]] = []
            out.reserveCapacity(Int(rows))
            for r in 0..<rows {
                var row: [String?] = []
                for c in 0..<columns {
                    row.append(PQgetisnull(result, r, c) != 0 ? nil : String(cString: PQgetvalue(result, r, c)))
                }
                out.append(row)
            }
            return out
        case PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            return []
        default:
            let state = PQresultErrorField(result, CLIBPQ_DIAG_SQLSTATE).map { String(cString: $0) }
            let primary = PQresultErrorField(result, CLIBPQ_DIAG_MESSAGE_PRIMARY).map { String(cString: $0) }
            throw lostOrFailed(sqlstate: state, message: primary ?? String(cString: PQresultErrorMessage(result)))
        }
    }

    /// Runs `sql` and returns the first column of the first row.
    public func scalar(_ sql: String, _ parameters: [String?] = []) throws(DatabaseError) -> String? {
        try query(sql, parameters).first?.first ?? nil
    }

    /// A terminated session surfaces no SQLSTATE: `PQstatus` tells it apart from a failed statement.
    private func lostOrFailed(sqlstate: String?, message: String) -> DatabaseError {
        let text = message.trimmingWhitespace()
        if sqlstate == nil && !isAlive { return .connectionLost(message: text) }
        if sqlstate == "57P01" { return .connectionLost(message: text) }
        return .queryFailed(sqlstate: sqlstate ?? "08006", message: text)
    }
}
