import CutoverControl
import Dispatch

/// The agent's admin socket: the proxy's line protocol (one command per line, each answer ended by
/// an empty line, mode 0600), so `cutover ctl --socket AGENT.sock` drives the agent too; and a
/// timer that gives back expired read-only leases.
// @unchecked: both stored properties are set once; a Dispatch timer may be cancelled from any thread.
public final class AgentServer: @unchecked Sendable {
    private let socket: AdminSocketServer
    private let timer: DispatchSourceTimer
    public var path: String { socket.path }

    /// Binds `path` (replacing a stale socket) and starts serving `service`.
    public init(path: String, service: AgentService, leaseCheck: Duration = .seconds(1)) throws {
        socket = AdminSocketServer(path: path) { line in service.handle(line) }
        try socket.start()
        timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "cutover.agent.leases"))
        timer.schedule(deadline: .now() + leaseCheck.seconds, repeating: leaseCheck.seconds)
        timer.setEventHandler { _ = service.expireLeases() }
        timer.resume()
    }

    /// Stops the lease timer and the socket (the file is removed).
    public func stop() {
        timer.cancel()
        socket.stop()
    }
}
