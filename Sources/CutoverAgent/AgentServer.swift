import CutoverControl
import Dispatch
import Glibc

/// The agent's admin socket: the proxy's line protocol (one command per line, each answer ended by
/// an empty line, mode 0600), so `cutover ctl --socket AGENT.sock` drives the agent too; and a
/// timer that gives back expired read-only leases.
// @unchecked: the stored properties are set once in `init`; a Dispatch timer may be cancelled from any thread.
public final class AgentServer: @unchecked Sendable {
    private let socket: AdminSocketServer
    private let timer: DispatchSourceTimer
    private let service: AgentService
    private let signals: SignalRouter?
    /// The socket's path.
    public var path: String { socket.path }

    /// Binds `path` (replacing a stale socket) and starts serving `service`. With `onTermination`,
    /// SIGTERM and SIGINT `stop()` the server and `exit(0)`, as the proxy does, saying so through it.
    ///
    /// The signals are caught before the socket exists: a client that sees the socket file may
    /// signal at once, and must not find the default action (death, the socket file left behind).
    public init(path: String, service: AgentService, leaseCheck: Duration = .seconds(1),
                onTermination log: (@Sendable (String) -> Void)? = nil) throws {
        self.service = service
        // The router exists before the socket: a signal in between waits for the server to be whole.
        let router = log.map { _ in SignalRouter(numbers: [SIGTERM, SIGINT]) }
        socket = AdminSocketServer(path: path) { line in service.handle(line) }
        try socket.start()
        timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "cutover.agent.leases"))
        timer.schedule(deadline: .now() + leaseCheck.seconds, repeating: leaseCheck.seconds)
        timer.setEventHandler { _ = service.expireLeases() }
        timer.resume()
        signals = router
        if let router, let log {
            router.attach { [self] number in
                log("\(number == SIGTERM ? "SIGTERM" : "SIGINT"): stopping (finishing the command in progress)")
                stop()
                log("stopped; removed \(path)")
                exit(0)
            }
        }
    }

    /// Stops accepting (the socket file is removed) and the lease timer, then waits for the command
    /// in progress to finish; commands still arriving on open connections are refused (`shutting-down`).
    ///
    /// A lease held at that moment stays in the lease file: the next agent re-arms it.
    public func stop() {
        timer.cancel()
        socket.stop()
        service.finish()
        // The finished command's answer is still on its way to the client; let it arrive.
        _ = socket.waitForAnswersInProgress(timeout: .seconds(5))
    }
}
