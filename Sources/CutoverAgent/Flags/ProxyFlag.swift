import CutoverCore
import CutoverControl
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The proxy's own gates, `maintenance` or `readonly`, switched over its admin Unix socket.
public struct ProxyFlag: FlagDriver {
    /// The two gates the proxy has (DESIGN.md "Maintenance and read-only gates").
    public enum Gate: String, Sendable, CaseIterable {
        case maintenance
        case readonly
    }

    public let socketPath: String
    public let profile: String
    public let gate: Gate
    /// Bound on connect, send and each read.
    public var timeout: Duration = .seconds(5)

    public init(socketPath: String, profile: String, gate: Gate) {
        self.socketPath = socketPath
        self.profile = profile
        self.gate = gate
    }

    public var kind: String { "proxy" }
    public var target: String { "proxy \(gate.rawValue) \(profile)" }

    public func on() throws(FlagError) -> FlagResult { try set("on") }
    public func off() throws(FlagError) -> FlagResult { try set("off") }

    /// Whether the gate is closed now, as the proxy's `show profiles --json` says (read as Core's `ProfilesAnswer`).
    public func status() throws(FlagError) -> FlagResult {
        let answer = try exchange("show profiles --json")
        let decoded: AdminAnswer<ProfilesAnswer>
        do {
            decoded = try JSONCoding.decode(AdminAnswer<ProfilesAnswer>.self, from: answer)
        } catch {
            throw .proxyRefused(code: "bad-answer", message: "unexpected answer \"\(answer)\"")
        }
        guard let profiles = decoded.data else {
            throw .proxyRefused(code: decoded.code ?? "error", message: decoded.message ?? "refused without a message")
        }
        guard let entry = profiles.profile(named: profile) else {
            throw .proxyRefused(code: "unknown-profile", message: "the proxy has no profile named \"\(profile)\"")
        }
        let closed: Bool
        switch gate {
        case .maintenance: closed = entry.maintenance
        case .readonly: closed = entry.readonly
        }
        let state = closed ? "on" : "off"
        return FlagResult(driver: kind, target: target, action: "status", state: state, detail: "\(gate.rawValue) \(profile) \(state)")
    }

    private func set(_ state: String) throws(FlagError) -> FlagResult {
        let answer = try exchange("\(gate.rawValue) \(profile) \(state)")
        guard answer.hasPrefix("OK") else {
            throw .proxyRefused(code: "bad-answer", message: "unexpected answer \"\(answer)\"")
        }
        return FlagResult(driver: kind, target: target, action: state, state: state, detail: answer)
    }

    /// One command on the proxy's admin socket; an `ERR <code>: <message>` answer is thrown.
    private func exchange(_ command: String) throws(FlagError) -> String {
        let answer: String
        do {
            answer = try AdminClient(path: socketPath, timeout: timeout).send(command)
        } catch {
            throw .proxyUnreachable(socket: socketPath, message: "\(error)")
        }
        guard answer.hasPrefix("ERR") else { return answer }
        let rest = answer.dropFirst(3).drop { $0 == " " }
        guard let colon = rest.firstIndex(of: ":") else { throw .proxyRefused(code: "error", message: String(rest)) }
        throw .proxyRefused(code: String(rest[..<colon]), message: String(rest[rest.index(after: colon)...]).trimmingWhitespace())
    }
}
