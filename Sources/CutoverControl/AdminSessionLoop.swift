import Foundation
import Glibc
import Synchronization

/// How many sessions, threads and seconds an `AdminSessionLoop` allows.
public struct AdminSessionLimits: Sendable, Equatable {
    /// Open sessions at most; a new connection past this evicts the longest-silent session.
    public var maxSessions: Int
    /// Threads that run commands; one more busy command is answered `busy`.
    public var executors: Int
    /// Time a session has to send a whole request, from its connect or its last answer.
    public var readTimeout: Duration

    public init(maxSessions: Int = 64, executors: Int = 4, readTimeout: Duration = .seconds(10)) {
        self.maxSessions = max(1, maxSessions)
        self.executors = max(1, executors)
        self.readTimeout = readTimeout
    }
}

/// Serves admin connections (the admin socket, the admin HTTP listener) from one readiness loop and
/// a small fixed pool of threads that run the commands.
///
/// Why: a thread per connection let about 260 clients that send nothing hold 262 threads and fill
/// the backlog, so `cutover ctl` hung for minutes — during a cutover a stuck monitoring script would
/// lock operators out of `switch` and `pause`. Here a silent connection costs a descriptor and a
/// few bytes: one thread `poll`s every session, a session that has not sent a whole request within
/// `readTimeout` is closed, and at `maxSessions` the session that has been silent longest makes room
/// (a client that has sent a command is never evicted). Commands may block (`switch --wait`), so
/// they run on `executors` threads; when every one is busy the new command is answered `busy` at
/// once instead of waiting behind them.
public final class AdminSessionLoop<Request: Sendable>: @unchecked Sendable {  // loop state confined to the loop thread; `shared` is locked
    /// What `frame` found at the start of a session's received bytes.
    public enum Framing: Sendable {
        /// No whole request yet: read more.
        case incomplete
        /// A whole request, taking the first `consumed` bytes.
        case request(Request, consumed: Int)
        /// Bytes that are no request: send this answer and close.
        case refuse([UInt8])
    }

    /// What a command's handler answers.
    public struct Answer: Sendable {
        /// Sent in full (within `readTimeout`) before the session reads again.
        public var bytes: [UInt8]
        /// Whether the session reads the next request afterwards.
        public var keepOpen: Bool
        /// A stream (`show events --follow`, `/events`): after `bytes` the session leaves the loop
        /// and this runs on a thread of its own with the session's blocking descriptor, which it
        /// closes when done; it holds no executor and no session slot.
        public var detach: (@Sendable (Int32) -> Void)?

        public init(bytes: [UInt8], keepOpen: Bool, detach: (@Sendable (Int32) -> Void)? = nil) {
            self.bytes = bytes
            self.keepOpen = keepOpen
            self.detach = detach
        }
    }

    /// What the loop answers on its own: to a command while every executor is busy, and to a
    /// session whose read timeout passed (`nil`: close without a word).
    public struct Refusals: Sendable {
        public var busy: [UInt8]
        public var timedOut: [UInt8]?

        public init(busy: [UInt8], timedOut: [UInt8]?) {
            self.busy = busy
            self.timedOut = timedOut
        }
    }

    /// Counts since start, for tests and metrics.
    public struct Counts: Sendable, Equatable {
        /// Sessions open now.
        public var open = 0
        /// Sessions closed because their read timeout passed.
        public var timedOut = 0
        /// Silent sessions closed to make room for a new connection at `maxSessions`.
        public var evicted = 0
        /// Commands (or connections) answered `busy`.
        public var busy = 0
    }

    public let limits: AdminSessionLimits
    private let name: String
    private let listenFD: Int32
    private let refusals: Refusals
    private let frame: @Sendable ([UInt8]) -> Framing
    private let answer: @Sendable (Request) -> Answer
    /// Entered for each command from its framing to its answer being sent.
    private let answering = DispatchGroup()

    /// State the loop thread and the executors share, under `lock`.
    private struct Shared {
        var jobs: [(fd: Int32, request: Request)] = []
        var finished: [(fd: Int32, keepOpen: Bool, detached: Bool)] = []
        var stopping = false
        var loopEnded = false
        var counts = Counts()
    }
    private let lock = NSCondition()
    private var shared = Shared()
    // Loop-thread state: the sessions and how many executors run a command now.
    private struct Session {
        var buffer: [UInt8] = []
        /// Monotonic milliseconds of the connect or the last answer; the read timeout counts from it.
        var since: UInt64
        var answering = false
    }
    private var sessions: [Int32: Session] = [:]
    private var busyExecutors = 0
    private var wakeRead: Int32 = -1
    private var wakeWrite: Int32 = -1

    /// - Parameters:
    ///   - listenFD: a listening socket, owned from now on (closed when the loop ends).
    ///   - frame: finds one request at the start of a session's bytes (called on the loop thread).
    ///   - answer: runs one request (called on an executor thread; may block).
    public init(
        name: String, listenFD: Int32, limits: AdminSessionLimits, refusals: Refusals,
        frame: @escaping @Sendable ([UInt8]) -> Framing, answer: @escaping @Sendable (Request) -> Answer
    ) {
        self.name = name
        self.listenFD = listenFD
        self.limits = limits
        self.refusals = refusals
        self.frame = frame
        self.answer = answer
    }

    /// Starts the loop thread and the executors.
    public func start() {
        var ends: [Int32] = [0, 0]
        precondition(pipe(&ends) == 0, "pipe: \(String(cString: strerror(errno)))")
        for end in ends {
            _ = fcntl(end, F_SETFL, O_NONBLOCK)
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
        }
        (wakeRead, wakeWrite) = (ends[0], ends[1])
        _ = fcntl(listenFD, F_SETFL, O_NONBLOCK)
        let loop = Thread { [self] in run() }
        loop.name = name
        loop.start()
        for index in 0..<limits.executors {
            let executor = Thread { [self] in execute() }
            executor.name = "\(name).\(index)"
            executor.start()
        }
    }

    /// Stops accepting and closes idle sessions; commands in progress still send their answers.
    public func stop() {
        lock.lock()
        shared.stopping = true
        lock.broadcast()
        lock.unlock()
        wake()
    }

    /// Waits until every command being answered has had its answer sent, at most `timeout`;
    /// false when some were still running.
    public func waitForAnswersInProgress(timeout: Duration) -> Bool {
        let (seconds, attoseconds) = timeout.components
        return answering.wait(timeout: .now() + Double(seconds) + Double(attoseconds) / 1e18) == .success
    }

    /// The counts at this moment.
    public var counts: Counts {
        lock.lock()
        defer { lock.unlock() }
        return shared.counts
    }

    // MARK: - The loop thread

    private func run() {
        var scratch = [UInt8](repeating: 0, count: 16_384)
        while true {
            lock.lock()
            let stopping = shared.stopping
            let finished = shared.finished
            shared.finished = []
            lock.unlock()
            for done in finished { commandFinished(fd: done.fd, keepOpen: done.keepOpen, detached: done.detached) }
            if stopping { break }

            let now = Self.milliseconds()
            let timeoutMs = Self.milliseconds(limits.readTimeout)
            var next = UInt64(1000)
            var watched: [pollfd] = [pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0), pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            for (fd, session) in sessions where !session.answering {
                watched.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0))
                let deadline = session.since + timeoutMs
                next = min(next, deadline > now ? deadline - now : 0)
            }
            let ready = poll(&watched, nfds_t(watched.count), Int32(next))
            if ready < 0 && errno != EINTR { break }
            if watched[1].revents != 0 { drainWake() }
            for entry in watched.dropFirst(2) where entry.revents != 0 {
                readable(entry.fd, scratch: &scratch)
            }
            if watched[0].revents != 0 { acceptAll() }
            expireSilentSessions(now: Self.milliseconds())
        }
        // Stopping: idle sessions close now; those answering close when their executor is done.
        close(listenFD)
        lock.lock()
        shared.loopEnded = true
        let finished = shared.finished
        shared.finished = []
        lock.unlock()
        for done in finished { commandFinished(fd: done.fd, keepOpen: false, detached: done.detached) }
        for (fd, session) in sessions where !session.answering { closeSession(fd) }
        close(wakeRead)
    }

    private func acceptAll() {
        while true {
            let fd = accept(listenFD, nil, nil)
            if fd < 0 { return }
            _ = fcntl(fd, F_SETFL, O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            if sessions.count >= limits.maxSessions {
                guard let silent = sessions.filter({ !$0.value.answering }).min(by: { $0.value.since < $1.value.since })?.key else {
                    // Every session is running a command: this one cannot be served now.
                    count { $0.busy += 1 }
                    Self.sendNow(fd, refusals.busy)
                    close(fd)
                    continue
                }
                count { $0.evicted += 1 }
                closeSession(silent)
            }
            sessions[fd] = Session(since: Self.milliseconds())
            count { $0.open += 1 }
        }
    }

    private func readable(_ fd: Int32, scratch: inout [UInt8]) {
        guard sessions[fd] != nil else { return }  // evicted earlier in this round
        let n = scratch.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
        guard n > 0 else {
            closeSession(fd)
            return
        }
        sessions[fd]!.buffer.append(contentsOf: scratch[0..<n])
        frameNext(fd)
    }

    /// Hands the next whole request of a session to an executor, if there is one.
    private func frameNext(_ fd: Int32) {
        guard let session = sessions[fd], !session.answering else { return }
        switch frame(session.buffer) {
        case .incomplete:
            return
        case .refuse(let bytes):
            Self.sendNow(fd, bytes)
            closeSession(fd)
        case .request(let request, let consumed):
            sessions[fd]!.buffer.removeFirst(consumed)
            guard busyExecutors < limits.executors else {
                count { $0.busy += 1 }
                Self.sendNow(fd, refusals.busy)
                closeSession(fd)
                return
            }
            busyExecutors += 1
            sessions[fd]!.answering = true
            answering.enter()
            lock.lock()
            shared.jobs.append((fd, request))
            lock.signal()
            lock.unlock()
        }
    }

    private func commandFinished(fd: Int32, keepOpen: Bool, detached: Bool) {
        busyExecutors -= 1
        answering.leave()
        if detached {
            // Its stream owns the descriptor now: forget the session without closing it.
            if sessions.removeValue(forKey: fd) != nil { count { $0.open -= 1 } }
            return
        }
        guard keepOpen, sessions[fd] != nil else {
            closeSession(fd)
            return
        }
        sessions[fd]!.answering = false
        sessions[fd]!.since = Self.milliseconds()
        frameNext(fd)  // a pipelined request may already be buffered
    }

    private func expireSilentSessions(now: UInt64) {
        let timeoutMs = Self.milliseconds(limits.readTimeout)
        let expired = sessions.filter { !$0.value.answering && $0.value.since + timeoutMs <= now }.keys
        for fd in expired {
            if let bytes = refusals.timedOut { Self.sendNow(fd, bytes) }
            count { $0.timedOut += 1 }
            closeSession(fd)
        }
    }

    private func closeSession(_ fd: Int32) {
        guard sessions.removeValue(forKey: fd) != nil else { return }
        count { $0.open -= 1 }
        close(fd)
    }

    private func count(_ change: (inout Counts) -> Void) {
        lock.lock()
        change(&shared.counts)
        lock.unlock()
    }

    private func wake() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    private func drainWake() {
        var bytes = [UInt8](repeating: 0, count: 64)
        while bytes.withUnsafeMutableBytes({ read(wakeRead, $0.baseAddress, $0.count) }) > 0 {}
    }

    // MARK: - Executors

    private func execute() {
        while true {
            lock.lock()
            while shared.jobs.isEmpty && !shared.stopping { lock.wait() }
            guard !shared.jobs.isEmpty else {
                lock.unlock()
                return
            }
            let job = shared.jobs.removeFirst()
            lock.unlock()

            let reply = answer(job.request)
            let sent = Self.sendAll(job.fd, reply.bytes, within: limits.readTimeout)
            let detached = sent && reply.detach != nil
            lock.lock()
            let loopEnded = shared.loopEnded
            if !loopEnded { shared.finished.append((job.fd, sent && reply.keepOpen, detached)) }
            lock.unlock()
            if detached, let stream = reply.detach {
                // The stream's own thread blocks on it, but never longer than the read timeout on
                // a client that stopped reading.
                _ = fcntl(job.fd, F_SETFL, 0)
                let sendTimeoutMs = Self.milliseconds(limits.readTimeout)
                var limit = timeval(tv_sec: Int(sendTimeoutMs / 1000), tv_usec: Int(sendTimeoutMs % 1000) * 1000)
                setsockopt(job.fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
                let fd = job.fd
                let thread = Thread { stream(fd) }
                thread.name = "\(name).stream"
                thread.start()
                if loopEnded { answering.leave() } else { wake() }
                continue
            }
            if loopEnded {
                // Nobody reads this session any more: it ends with its answer.
                answering.leave()
                close(job.fd)
            } else {
                wake()
            }
        }
    }

    // MARK: - Sending

    /// Sends what the socket takes now without waiting (a short refusal before closing).
    private static func sendNow(_ fd: Int32, _ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Sends all of `bytes` on a non-blocking socket, waiting for room at most `within` in total;
    /// false when the peer is gone or too slow.
    static func sendAll(_ fd: Int32, _ bytes: [UInt8], within: Duration) -> Bool {
        let deadline = milliseconds() + milliseconds(within)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                offset += n
                continue
            }
            guard n < 0, errno == EAGAIN || errno == EINTR else { return false }
            let now = milliseconds()
            guard now < deadline else { return false }
            var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            _ = poll(&entry, 1, Int32(min(deadline - now, 1000)))
        }
        return true
    }

    static func milliseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1000 + UInt64(now.tv_nsec) / 1_000_000
    }

    static func milliseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        return UInt64(max(0, seconds * 1000 + attoseconds / 1_000_000_000_000_000))
    }
}
