import CutoverCore
import Dispatch
import Foundation
import Glibc

extension ProxyRuntime {
    /// Stops accepting, lets in-flight work finish within the shutdown timeout, then closes the rest.
    ///
    /// - Parameter done: called once everything is closed (the caller exits).
    public func shutdown(done: @escaping @Sendable () -> Void) {
        controlQueue.async { [self] in
            guard !shuttingDown.exchange(true, ordering: .relaxed) else { return }
            SystemdNotify.send("STOPPING=1")
            Log.info("shutting down: no new connections; waiting up to \(DurationText.format(config.timeouts.shutdown)) for in-flight work")
            for listener in listeners { listener.close() }
            let deadline = monotonicMilliseconds() + UInt64(config.timeouts.shutdown.milliseconds)
            pollShutdown(deadline: deadline, done: done)
        }
    }

    private func pollShutdown(deadline: UInt64, done: @escaping @Sendable () -> Void) {
        for worker in workers {
            worker.queue.async { worker.closeIdleConnections() }
        }
        let open = stats.openConnections.load(ordering: .relaxed)
        if open == 0 || monotonicMilliseconds() >= deadline {
            if open > 0 { Log.warning("shutdown deadline passed: closing \(open) connections") }
            let group = DispatchGroup()
            for worker in workers {
                worker.queue.async(group: group) { worker.closeAll(reason: "shutdown") }
            }
            group.notify(queue: controlQueue) {
                Log.info("stopped")
                done()
            }
            return
        }
        controlQueue.asyncAfter(deadline: .now() + .milliseconds(50)) { [self] in
            pollShutdown(deadline: deadline, done: done)
        }
    }
}

extension Worker {
    /// Closes keep-alive connections that are between requests (shutdown).
    func closeIdleConnections() {
        for connection in Array(connectionsSnapshot) {
            (connection as? HTTPSession)?.closeIfIdle()
        }
    }
}
