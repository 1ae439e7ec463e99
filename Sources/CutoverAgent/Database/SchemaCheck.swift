import CutoverCore
import Foundation

/// Fails when a database's schema differs from what the runbook pins: a fingerprint, a version query's value, or both.
///
/// The fingerprint is the hex SHA-256, computed by PostgreSQL, of one sorted line per object in the
/// user schemas (everything but `pg_catalog`, `information_schema`, `pg_toast`, temporary schemas and
/// cutover's own `cutover`): relations and their kind, columns (position among live columns, name,
/// type, nullability, default), constraints, indexes, views, sequences, functions. Owners, grants,
/// comments, statistics and data are left out, so a `--no-owner` dump copy and a template copy of a
/// database have the fingerprint of the original. It changes nothing; nothing to undo.
public struct SchemaCheck: DatabaseStep {
    /// The database checked.
    public var database: ConnectionString
    /// Hex SHA-256 from `SchemaCheck.fingerprint` (or `cutover db fingerprint`); `nil` skips it.
    public var expectedFingerprint: String?
    /// A query returning one value (`SELECT max(version) FROM schema_migrations`); `nil` skips it.
    public var versionQuery: String?
    /// What `versionQuery` must return.
    public var expectedVersion: String?
    /// Bound on each connection attempt.
    public var connectTimeout: Duration = .seconds(5)

    /// A check of `database`; nothing happens until `apply`.
    public init(database: ConnectionString, expectedFingerprint: String?, versionQuery: String?, expectedVersion: String?) {
        self.database = database
        self.expectedFingerprint = expectedFingerprint
        self.versionQuery = versionQuery
        self.expectedVersion = expectedVersion
    }

    public var description: String {
        var pins: [String] = []
        if let expectedFingerprint { pins.append("fingerprint \(expectedFingerprint.prefix(12))…") }
        if let versionQuery { pins.append("\(versionQuery) = \(expectedVersion ?? "NULL")") }
        return "schema-check \(database.database): " + (pins.isEmpty ? "nothing pinned" : pins.joined(separator: ", "))
    }

    public var undoStep: (any DatabaseStep)? { nil }

    /// The check itself: it is read-only, so plan runs it.
    public func preflight() -> [String] {
        do throws(DatabaseError) {
            _ = try apply()
            return []
        } catch {
            return [error.description]
        }
    }

    /// Always false: a check has no lasting effect, so resume simply runs it again.
    public func isApplied() throws(DatabaseError) -> Bool { false }

    public func apply() throws(DatabaseError) -> DatabaseStepReport {
        let session = try PostgresConnection(database, connectTimeout: connectTimeout)
        var details: [String: String] = [:]
        let fingerprint = try Self.fingerprint(session)
        details["fingerprint"] = fingerprint
        if let expectedFingerprint, expectedFingerprint.lowercased() != fingerprint {
            throw .drift(database: database.database, what: "the schema fingerprint", expected: expectedFingerprint, observed: fingerprint)
        }
        if let versionQuery {
            let rows = try session.query(versionQuery)
            guard rows.count == 1, rows[0].count == 1 else {
                throw .refused(step: description, reason: "the version query must return one value, it returned \(rows.count) row(s) of \(rows.first?.count ?? 0) column(s)")
            }
            let observed = rows[0][0]
            details["version"] = observed ?? "NULL"
            if observed != expectedVersion {
                throw .drift(database: database.database, what: "\(versionQuery)", expected: expectedVersion ?? "NULL", observed: observed ?? "NULL")
            }
        }
        let checked = [expectedFingerprint.map { _ in "fingerprint" }, versionQuery.map { _ in "version \(details["version"] ?? "")" }].compactMap { $0 }
        return DatabaseStepReport(
            summary: "schema of \(database.database) is as pinned (\(checked.isEmpty ? "nothing pinned; fingerprint \(fingerprint)" : checked.joined(separator: ", ")))",
            details: details)
    }

    /// The schema fingerprint of `database` (hex SHA-256), for pinning in a runbook.
    public static func fingerprint(_ database: ConnectionString) throws(DatabaseError) -> String {
        try fingerprint(PostgresConnection(database))
    }

    static func fingerprint(_ session: PostgresConnection) throws(DatabaseError) -> String {
        guard let value = try session.scalar(fingerprintSQL) else {
            throw .notProven(database: session.connectionString.database, expected: "a schema fingerprint", observed: "the query returned NULL")
        }
        return value
    }

    /// One line per object, sorted, hashed by the server; an empty schema hashes the empty string.
    static let fingerprintSQL = """
        WITH ns AS (
            SELECT oid, nspname FROM pg_namespace
             WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'cutover')
               AND nspname NOT LIKE 'pg\\_temp\\_%' AND nspname NOT LIKE 'pg\\_toast\\_temp\\_%'
        ), rel AS (
            SELECT c.oid, c.relkind, format('%I.%I', ns.nspname, c.relname) AS name
              FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
        ), lines AS (
            SELECT 'schema ' || quote_ident(nspname) AS line FROM ns
            UNION ALL
            SELECT 'relation ' || name || ' ' || relkind::text FROM rel
            UNION ALL
            SELECT format('column %s #%s %I %s%s%s', rel.name,
                          row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum), a.attname,
                          format_type(a.atttypid, a.atttypmod), CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,
                          coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), ''))
              FROM pg_attribute a JOIN rel ON rel.oid = a.attrelid
              LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE a.attnum > 0 AND NOT a.attisdropped AND rel.relkind <> 'S'
            UNION ALL
            SELECT format('constraint %s %I %s', coalesce(rel.name, 'domain ' || co.contypid::regtype::text), co.conname,
                          pg_get_constraintdef(co.oid))
              FROM pg_constraint co JOIN ns ON ns.oid = co.connamespace LEFT JOIN rel ON rel.oid = co.conrelid
            UNION ALL
            SELECT 'index ' || pg_get_indexdef(i.indexrelid)
              FROM pg_index i JOIN rel ON rel.oid = i.indrelid
            UNION ALL
            SELECT 'view ' || rel.name || ' ' || pg_get_viewdef(rel.oid) FROM rel WHERE rel.relkind IN ('v', 'm')
            UNION ALL
            SELECT format('sequence %I.%I %s start %s increment %s min %s max %s cycle %s', s.schemaname, s.sequencename,
                          s.data_type, s.start_value, s.increment_by, s.min_value, s.max_value, s.cycle)
              FROM pg_sequences s WHERE s.schemaname IN (SELECT nspname FROM ns)
            UNION ALL
            SELECT format('function %s returns %s %s %s', p.oid::regprocedure, pg_get_function_result(p.oid), p.prokind,
                          md5(coalesce(p.prosrc, '') || coalesce(pg_get_function_sqlbody(p.oid), '')))
              FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
            UNION ALL
            SELECT format('type %s %s', t.oid::regtype, t.typtype)
              FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
             WHERE t.typtype IN ('e', 'd', 'c') AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind <> 'c')
        )
        SELECT encode(sha256(convert_to(coalesce(string_agg(line, E'\\n' ORDER BY line COLLATE "C"), ''), 'UTF8')), 'hex') FROM lines
        """
}
