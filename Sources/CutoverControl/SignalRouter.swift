import Dispatch
import Glibc

/// The process's signal sources, made before anything listens. Until the server attaches its handler
/// the signals that arrive are kept in order, then replayed to it; each kind is kept once, since a
/// second SIGTERM during start asks for nothing the first did not.
public final class SignalRouter: @unchecked Sendable {  // state confined to `queue`
    private let queue = DispatchQueue(label: "cutover.signals")
    private var sources: [DispatchSourceSignal] = []
    private var handler: (@Sendable (Int32) -> Void)?
    private var pending: [Int32] = []

    /// Catches `numbers` from now on; until `attach`, what arrives is kept.
    public init(numbers: [Int32]) {
        // Blocked in this thread and in every thread it starts later, the signals wait in the
        // process's pending set for Dispatch's signalfd; unblocked, a thread that is not Dispatch's
        // would take them with the SIG_IGN below and they would be lost.
        var blocked = sigset_t()
        sigemptyset(&blocked)
        for number in numbers { sigaddset(&blocked, number) }
        pthread_sigmask(SIG_BLOCK, &blocked, nil)
        for number in numbers {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { [unowned self] in self.received(number) }
            source.activate()
            sources.append(source)
        }
    }

    /// Hands every later signal to `handler`, after the ones that arrived before it.
    /// `replaying` is told about each early signal just before `handler` gets it.
    public func attach(_ handler: @escaping @Sendable (Int32) -> Void, replaying: @escaping @Sendable (Int32) -> Void = { _ in }) {
        queue.async {
            self.handler = handler
            let early = self.pending
            self.pending = []
            for number in early {
                replaying(number)
                handler(number)
            }
        }
    }

    /// Parks the calling thread, the main thread, for good, with the signals it blocked still
    /// blocked: what a server does once it runs, instead of `dispatchMain()`.
    ///
    /// `dispatchMain()` leaves the main thread in `sigsuspend` with an empty mask. A signal can then
    /// be delivered there, to the handler libdispatch installs, instead of being read from the
    /// signal source's signalfd. The two race, so now and then a SIGTERM or SIGHUP was lost: a proxy
    /// that went on serving after `systemctl stop`. Nothing in this package uses the main queue.
    public static func parkMainThread() -> Never {
        while true { pause() }
    }

    private func received(_ number: Int32) {
        if let handler {
            handler(number)
        } else if !pending.contains(number) {
            pending.append(number)
        }
    }
}
