import CutoverCore
import Foundation

/// Events for integrations: `show events --follow` on the admin socket and `/events`
/// (`text/event-stream`) on the admin HTTP listener stream each state and health change as it
/// happens, so chat bots, alerting and deploy tools need not poll.
extension ProxyRuntime {
    /// How often a follower looks for new events. Events are rare (switches, health changes):
    /// a 100 ms poll of a counter costs nothing and bounds the delay.
    static let followInterval: useconds_t = 100_000
    /// A follower that has seen nothing for this many polls checks that its client is still there.
    static let followHeartbeatPolls = 10

    /// The admin socket's streaming commands: `show events --follow [--json]` sends one answer per
    /// event (its `show events` line, or its JSON record) until the client leaves or the proxy stops.
    ///
    /// - Returns: `nil` when `line` is not a streaming command (it is then answered as usual), else
    ///   the first answer and the stream's body (which blocks on a thread of its own).
    func stream(line: String) -> (first: String, follow: @Sendable (_ send: (String) -> Bool) -> Void)? {
        guard let parsed = try? AdminCommand.parse(line), parsed.command == .followEvents else { return nil }
        let json = parsed.json
        let started = json ? JSONCoding.line(AdminAnswer(message: "following events", data: NoAnswerData())) : "OK following events"
        return (started, { [self] send in
            follow(heartbeat: "", send: send) { event in json ? JSONCoding.line(event.record) : event.line }
        })
    }

    /// `/events`: the same events as server-sent events (`event: change`, `data:` the JSON record),
    /// with a comment line as a heartbeat so a gone client is noticed.
    func eventStreamResponse() -> AdminHTTPServer.Response {
        var response = AdminHTTPServer.Response(status: 200, contentType: "text/event-stream", body: "")
        response.stream = { [self] send in
            guard send(": following events\n\n") else { return }
            follow(heartbeat: ": keep-alive\n\n", send: send) { event in "event: change\ndata: \(JSONCoding.line(event.record))\n\n" }
        }
        return response
    }

    /// Sends every event recorded from now on, formatted, until `send` fails or shutdown starts.
    private func follow(heartbeat: String, send: (String) -> Bool, format: (RuntimeEvent) -> String) {
        var seen = events.total
        var quietPolls = 0
        while !shuttingDown.load(ordering: .relaxed) {
            let (fresh, total) = events.since(seen)
            seen = total
            for event in fresh {
                guard send(format(event)) else { return }
            }
            quietPolls = fresh.isEmpty ? quietPolls + 1 : 0
            if quietPolls >= Self.followHeartbeatPolls {
                quietPolls = 0
                guard send(heartbeat) else { return }
            }
            usleep(Self.followInterval)
        }
    }
}
