import CutoverControl
import CutoverCore
import Foundation

/// The runbook's view of one proxy: admin-socket command lines with `--json`, answers decoded as
/// Core's `AdminAnswer` types (the same the proxy encodes).
///
/// Every step opens its own connection: the proxy may restart between steps of a long run.
struct ProxyAdminSession {
    let socket: String

    /// Sends `command --json`; an `ok: false` answer is thrown with its code and message.
    func send<Payload: Codable & Sendable>(_ command: String, as payload: Payload.Type, timeout: Duration) throws(StepFailure) -> AdminAnswer<Payload> {
        try AdminLine(socket: socket, peer: "proxy").send(command, as: payload, timeout: timeout)
    }

    /// Sends a command that changes something and returns the proxy's message.
    func change(_ command: String, timeout: Duration) throws(StepFailure) -> String {
        try send(command, as: NoAnswerData.self, timeout: timeout).message ?? "ok"
    }

    func profile(_ name: String, timeout: Duration = .seconds(5)) throws(StepFailure) -> ProfileStatus {
        guard let answer = try send("show profiles", as: ProfilesAnswer.self, timeout: timeout).data else {
            throw StepFailure("the proxy's \"show profiles\" answer has no profiles")
        }
        guard let profile = answer.profile(named: name) else {
            throw StepFailure("the proxy at \(socket) has no profile \"\(name)\" (it has: \(answer.profiles.map(\.name).joined(separator: ", ")))")
        }
        return profile
    }

    func endpoint(profile: String, _ name: String, timeout: Duration = .seconds(5)) throws(StepFailure) -> EndpointStatus {
        guard let answer = try send("show endpoints \(profile)", as: EndpointsAnswer.self, timeout: timeout).data else {
            throw StepFailure("the proxy's \"show endpoints\" answer has no endpoints")
        }
        guard let endpoint = answer.endpoint(named: name, profile: profile) else {
            throw StepFailure("profile \"\(profile)\" has no endpoint \"\(name)\" (it has: \(answer.endpoints.map(\.name).joined(separator: ", ")))")
        }
        return endpoint
    }

}

/// One `--json` command line to a Cutover admin socket (the proxy's or the agent's: they speak the
/// same protocol and envelope), with failures worded for the journal.
struct AdminLine {
    let socket: String
    /// Who answers, for messages: `proxy` or `agent`.
    let peer: String

    /// Sends `command --json`; an `ok: false` answer is thrown with its code and message.
    func send<Payload: Codable & Sendable>(_ command: String, as payload: Payload.Type, timeout: Duration) throws(StepFailure) -> AdminAnswer<Payload> {
        let answer: String
        do {
            answer = try AdminClient(path: socket, timeout: timeout).send(command + " --json")
        } catch {
            throw StepFailure("\(peer) admin socket \(socket): \(error)")
        }
        let decoded: AdminAnswer<Payload>
        do {
            decoded = try JSONCoding.decode(AdminAnswer<Payload>.self, from: answer)
        } catch {
            throw StepFailure("\(peer) answered \"\(command)\" with something unexpected: \(answer.prefix(200))")
        }
        guard decoded.ok else {
            throw StepFailure("\(peer) refused \"\(command)\": \(decoded.code ?? "error"): \(decoded.message ?? "")")
        }
        return decoded
    }
}

/// Why one step (or undo) failed, one line for the journal and the operator.
public struct StepFailure: Error, Sendable, CustomStringConvertible {
    /// The failure, one line for the journal and the operator.
    public let description: String
    init(_ message: String) { description = message }
}
