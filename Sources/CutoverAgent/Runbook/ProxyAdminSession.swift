import CutoverCore
import CutoverProxy
import Foundation

/// The runbook's view of one proxy: admin-socket command lines with `--json`, answers decoded.
///
/// Every step opens its own connection: the proxy may restart between steps of a long run.
struct ProxyAdminSession {
    let socket: String

    /// One profile as `show profiles --json` reports it.
    struct Profile: Decodable {
        var name: String
        var live: [String]
        var paused: Bool
        var maintenance: Bool
        var readonly: Bool
        /// `on`, `off` or `hold` where the proxy reports it (proxies with `readonly … hold`).
        var readonlyMode: String?
        var held: Int?
    }

    /// One endpoint as `show endpoints PROFILE --json` reports it.
    struct Endpoint: Decodable {
        var name: String
        var state: String
        var health: String
        var priority: Int
        var weight: Int
        var live: Bool
        var inFlight: Int
    }

    private struct Profiles: Decodable { var profiles: [Profile] }
    private struct Endpoints: Decodable { var endpoints: [Endpoint] }
    private struct Outcome: Decodable {
        var ok: Bool?
        var code: String?
        var message: String?
    }

    /// Sends `command --json`; an `ok: false` answer is thrown with its code and message.
    func send(_ command: String, timeout: Duration) throws(StepFailure) -> Data {
        let answer: String
        do {
            answer = try AdminClient(path: socket, timeout: timeout).send(command + " --json")
        } catch {
            throw StepFailure("proxy admin socket \(socket): \(error)")
        }
        let data = Data(answer.utf8)
        guard let outcome = try? Self.decoder.decode(Outcome.self, from: data) else {
            throw StepFailure("proxy answered \"\(command)\" with something that is not JSON: \(answer.prefix(200))")
        }
        if outcome.ok == false {
            throw StepFailure("proxy refused \"\(command)\": \(outcome.code ?? "error"): \(outcome.message ?? "")")
        }
        return data
    }

    /// Sends a command that changes something and returns the proxy's message.
    func change(_ command: String, timeout: Duration) throws(StepFailure) -> String {
        let data = try send(command, timeout: timeout)
        return (try? Self.decoder.decode(Outcome.self, from: data))?.message ?? "ok"
    }

    func profile(_ name: String, timeout: Duration = .seconds(5)) throws(StepFailure) -> Profile {
        let data = try send("show profiles", timeout: timeout)
        let answer: Profiles
        do { answer = try Self.decoder.decode(Profiles.self, from: data) } catch {
            throw StepFailure("cannot read the proxy's \"show profiles\" answer: \(error)")
        }
        guard let profile = answer.profiles.first(where: { $0.name == name }) else {
            throw StepFailure("the proxy at \(socket) has no profile \"\(name)\" (it has: \(answer.profiles.map(\.name).joined(separator: ", ")))")
        }
        return profile
    }

    func endpoint(profile: String, _ name: String, timeout: Duration = .seconds(5)) throws(StepFailure) -> Endpoint {
        let data = try send("show endpoints \(profile)", timeout: timeout)
        let answer: Endpoints
        do { answer = try Self.decoder.decode(Endpoints.self, from: data) } catch {
            throw StepFailure("cannot read the proxy's \"show endpoints\" answer: \(error)")
        }
        guard let endpoint = answer.endpoints.first(where: { $0.name == name }) else {
            throw StepFailure("profile \"\(profile)\" has no endpoint \"\(name)\" (it has: \(answer.endpoints.map(\.name).joined(separator: ", ")))")
        }
        return endpoint
    }

    /// The profile's read-only gate mode: the proxy's own word where it gives one, else on/off.
    static func readOnlyMode(_ profile: Profile) -> ReadOnlyGateMode {
        profile.readonlyMode.flatMap(ReadOnlyGateMode.init(rawValue:)) ?? (profile.readonly ? .on : .off)
    }

    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }()
}

/// Why one step (or undo) failed, one line for the journal and the operator.
public struct StepFailure: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ message: String) { description = message }
}
