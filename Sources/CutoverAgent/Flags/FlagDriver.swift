import CutoverCore
import Foundation

/// A maintenance flag the application (or the proxy) reads: turned on, off, and asked about.
public protocol FlagDriver: Sendable {
    /// `file`, `sql` or `proxy`.
    var kind: String { get }
    /// What the flag is, for journals and messages (`file /run/app/maintenance`).
    var target: String { get }
    func on() throws(FlagError) -> FlagResult
    func off() throws(FlagError) -> FlagResult
    func status() throws(FlagError) -> FlagResult
}

/// The outcome of one flag operation.
public struct FlagResult: Codable, Sendable, Equatable {
    public var driver: String
    public var target: String
    /// `on`, `off` or `status`.
    public var action: String
    /// `on`, `off` or `unknown` after the operation.
    public var state: String
    /// What the driver saw (a proxy's answer, a status query's value).
    public var detail: String

    public var text: String { "flag \(target): \(state)\(detail.isEmpty ? "" : " (\(detail))")" }
    public var json: String { JSONCoding.line(self) }
}

/// Why a flag operation failed.
public enum FlagError: Error, Sendable, CustomStringConvertible {
    /// A file could not be written, synced, renamed or removed.
    case file(path: String, message: String)
    /// The SQL driver's database failed.
    case database(DatabaseError)
    /// The proxy's admin socket could not be reached or went silent.
    case proxyUnreachable(socket: String, message: String)
    /// The proxy answered `ERR <code>: <message>`.
    case proxyRefused(code: String, message: String)

    public var code: String {
        switch self {
        case .file: return "flag-file"
        case .database(let error): return error.code
        case .proxyUnreachable: return "proxy-unreachable"
        case .proxyRefused(let code, _): return code
        }
    }

    public var description: String {
        switch self {
        case .file(let path, let message): return "flag file \(path): \(message)"
        case .database(let error): return error.description
        case .proxyUnreachable(let socket, let message): return "proxy admin socket \(socket) is unreachable: \(message)"
        case .proxyRefused(let code, let message): return "the proxy refused (\(code)): \(message)"
        }
    }
}
