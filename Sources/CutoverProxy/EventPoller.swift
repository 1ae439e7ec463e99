import CShims
import Dispatch
import Foundation
import Glibc

/// The readiness of every socket a worker owns, waited for by one thread of the poller's own that
/// runs what it finds on the worker's serial queue.
///
/// Why not Dispatch sources: libdispatch on Linux re-arms every fired source through its manager
/// thread, so each socket event cost two thread hand-offs (measured: ~80 % of the proxy's CPU in
/// scheduler and eventfd work, 19k req/s against HAProxy's 37k on one core). One Dispatch read
/// source on the epoll descriptor still cost one hand-off per wake-up: the manager thread saw the
/// descriptor readable and woke a pool thread to run the handler. Here the poller's thread blocks
/// in `epoll_wait` itself and handles the events inside `queue.sync`, which on an idle serial queue
/// runs the block on the calling thread: the kernel wakes the one thread that does the work, as in
/// HAProxy's event loop. Every connection still lives on exactly one serial queue (the sync is
/// ordered with everything else sent to it), and timers and accepts remain Dispatch sources.
final class EventPoller: @unchecked Sendable {  // confined to the worker's queue, but for `wait()`'s thread
    private let epollFD: Int32
    private let queue: DispatchQueue
    private var channels = ChannelTable()
    /// Written by `epoll_wait` on the poller's thread, read on the queue inside the same `sync`.
    private let events: UnsafeMutablePointer<epoll_event>
    private static let batch = 256
    /// Counts `epoll_wait` rounds: a logical clock that orders channel activity without reading the
    /// clock on every read and write.
    private(set) var round: UInt64 = 1

    /// `cpu`: the one CPU the poller's thread is bound to, if any (`WorkerCPUAffinity`).
    init(queue: DispatchQueue, name: String, cpu: Int?) {
        epollFD = epoll_create1(Int32(EPOLL_CLOEXEC))
        precondition(epollFD >= 0, "epoll_create1: \(String(cString: strerror(errno)))")
        events = .allocate(capacity: EventPoller.batch)
        self.queue = queue
        // The thread lives as long as the process, as the worker does.
        let thread = Thread { [self] in
            // Named for top, ps and perf (Thread.name alone does not reach the kernel here).
            cshims_name_this_thread(name)
            // The CPU comes from the process's own allowed set, so binding fails only if that set
            // shrank since; then the thread stays where the scheduler puts it, which is still correct.
            if let cpu { _ = cshims_pin_this_thread(Int32(cpu)) }
            wait()
        }
        thread.start()
    }

    /// The poller's thread: blocks until some socket is ready, then handles the events on the queue.
    private func wait() {
        while true {
            let count = Int(epoll_wait(epollFD, events, Int32(EventPoller.batch), -1))
            if count < 0 {
                if errno == EINTR { continue }
                preconditionFailure("epoll_wait: \(String(cString: strerror(errno)))")
            }
            if count == 0 { continue }
            queue.sync { drain(first: count) }
        }
    }

    /// Reserves a token for a channel; the socket is added to epoll on its first interest.
    func register(_ channel: SocketChannel) -> UInt64 {
        channels.insert(channel)
    }

    /// Sets the events a socket is watched for; `0` removes it from epoll (a paused socket that hung
    /// up would otherwise report `EPOLLHUP` on every round).
    func update(fd: Int32, token: UInt64, from old: UInt32, to new: UInt32) {
        guard old != new else { return }
        var event = epoll_event()
        event.events = new
        event.data.u64 = token
        let operation: Int32 = old == 0 ? EPOLL_CTL_ADD : (new == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD)
        epoll_ctl(epollFD, operation, fd, &event)
    }

    /// The idle client channel with the oldest last activity, whose owner `accepts` it (at
    /// `max_connections`: the connection to close to make room).
    ///
    /// A flood of new connections at the cap evicts one per accept, and a scan of every channel per
    /// eviction made the proxy accept ~235 connections a second at 8,000 open (debug build; 12,000
    /// in 1.6 s below the cap), so a real client's connect waited in the backlog for seconds
    /// (`Tests/load/connections-over-cap.sh`). One scan now keeps the `idleCandidateCount` oldest,
    /// and later evictions take them in order while each is still idle with the same last activity.
    /// That stays exact: a channel that becomes idle after the scan did so by reading or writing,
    /// so its last activity is newer than every candidate's.
    func longestIdleClient(where accepts: (SocketChannel) -> Bool) -> SocketChannel? {
        for pass in 0..<2 {
            while let candidate = idleCandidates.popLast() {
                guard let channel = channels.channel(for: candidate.token), channel.isIdleClient, Self.lastActivity(channel) == candidate.round,
                    accepts(channel)
                else { continue }
                return channel
            }
            if pass == 0 { findIdleCandidates(accepts) }
        }
        return nil
    }

    /// Idle client channels found by the last scan, the longest idle last, each with its last
    /// activity round at the time of the scan.
    private var idleCandidates: [(token: UInt64, round: UInt64)] = []
    /// How many the scan keeps: each scan visits every channel, so it is paid once per this many evictions.
    private static let idleCandidateCount = 256

    private func findIdleCandidates(_ accepts: (SocketChannel) -> Bool) {
        var found: [(token: UInt64, round: UInt64)] = []
        channels.forEach { token, channel in
            if channel.isIdleClient && accepts(channel) { found.append((token, Self.lastActivity(channel))) }
        }
        found.sort { $0.round > $1.round }
        idleCandidates = Array(found.suffix(Self.idleCandidateCount))
    }

    private static func lastActivity(_ channel: SocketChannel) -> UInt64 {
        max(channel.openedRound, channel.lastReadRound, channel.lastWriteRound)
    }

    /// Forgets a channel; events already fetched for it in this round are skipped.
    func unregister(token: UInt64) {
        channels.remove(token: token)
    }

    /// Handles the `first` events `wait()` fetched, then asks again while events keep coming: one
    /// more `epoll_wait` with no timeout is cheaper than blocking and being woken. Bounded, so timers
    /// and accepts on the same queue are not starved under load.
    private func drain(first: Int) {
        var count = first
        for pass in 1...16 {
            round += 1
            handleRound {
                for index in 0..<count {
                    let event = events[index]
                    channels.channel(for: event.data.u64)?.handle(events: event.events)
                }
            }
            if pass == 16 { return }
            count = Int(epoll_wait(epollFD, events, Int32(EventPoller.batch), 0))
            if count <= 0 { return }
        }
    }

    // MARK: - Writes sent at the end of a round

    /// Whether a round's events are being handled: small writes of channels that defer
    /// (`SocketChannel.defersWrites`) wait for its end.
    ///
    /// Why: a write to a loopback or LAN peer that sleeps in `epoll_wait` wakes it, and waking a
    /// sleeping task (an inter-processor interrupt when its CPU idles) costs more than the send.
    /// Handling every ready socket first and sending after, as HAProxy's loop does, lets a peer
    /// (the backend, the client) find several messages per wake-up: with `wrk -c50` on 2 cores,
    /// about a fifth fewer wake-ups and a quarter fewer context switches machine-wide per request,
    /// level with HAProxy (docs/performance-history.md, "Writes sent at the end of a round"). A
    /// write waits at most one round.
    private(set) var inRound = false
    /// The waiting writes' bytes, one after another, and each write's channel and range, in order.
    private var roundOutput: [UInt8] = []
    private var roundWrites: [(channel: SocketChannel, range: Range<Int>)] = []
    /// Beyond this, the output buffer is given back after a round rather than kept for the next.
    private static let roundOutputKeptCapacity = 256 * 1024

    /// Runs `handle` as one round: the writes that wait go out in order once it returns.
    func handleRound(_ handle: () -> Void) {
        inRound = true
        handle()
        inRound = false
        sendRoundOutput()
    }

    /// Keeps `bytes` for `channel` until the round ends.
    func deferWrite(_ bytes: UnsafeRawBufferPointer, to channel: SocketChannel) {
        let start = roundOutput.count
        roundOutput.append(contentsOf: bytes)
        roundWrites.append((channel, start..<roundOutput.count))
    }

    /// Sends `channel`'s waiting writes now, ahead of the round's end: it closes, stops deferring,
    /// or writes something that does not wait. False when the peer is gone.
    func sendDeferredWrites(of channel: SocketChannel) -> Bool {
        var delivered = true
        // Each one is handed over, also after a failure: the channel drops it then, and it learns
        // that nothing of the round waits any more.
        for index in roundWrites.indices where roundWrites[index].channel === channel {
            if !sendRoundWrite(at: index) { delivered = false }
        }
        return delivered
    }

    /// Hands the waiting write at `index` to its channel and marks it sent (empty), so that the
    /// round's end skips it; false when the peer is gone.
    private func sendRoundWrite(at index: Int) -> Bool {
        let write = roundWrites[index]
        guard !write.range.isEmpty else { return true }
        roundWrites[index].range = write.range.lowerBound..<write.range.lowerBound
        return roundOutput.withUnsafeBytes { write.channel.sendDeferred(UnsafeRawBufferPointer(rebasing: $0[write.range])) }
    }

    /// Sends the round's waiting writes in the order they were made, then tells the owners of
    /// peers found gone (their handlers may write again, directly now).
    private func sendRoundOutput() {
        guard !roundWrites.isEmpty else { return }
        var failed: [SocketChannel] = []
        for index in roundWrites.indices where !sendRoundWrite(at: index) {
            failed.append(roundWrites[index].channel)
        }
        roundWrites.removeAll(keepingCapacity: true)
        if roundOutput.capacity > Self.roundOutputKeptCapacity {
            roundOutput = []
        } else {
            roundOutput.removeAll(keepingCapacity: true)
        }
        for channel in failed { channel.deferredWriteFailed() }
    }

    static let readable: UInt32 = cshims_epoll_in | cshims_epoll_rdhup
    static let writable: UInt32 = cshims_epoll_out
    static let failed: UInt32 = cshims_epoll_err | cshims_epoll_hup
    /// The peer shut down its sending side (watched alone on a paused socket: `SocketChannel.watchesHangUp`).
    static let hungUp: UInt32 = cshims_epoll_rdhup
}

/// The registered channels by slot, so finding an event's channel is an array index, not a hash
/// lookup (two per proxied request). A token is the slot in its low 32 bits and the slot's
/// generation above them: an event fetched for a channel that has left, or for an earlier user of a
/// reused slot, carries a token that no longer matches and finds nothing.
private struct ChannelTable {
    private struct Entry {
        var generation: UInt32
        var channel: SocketChannel?
    }

    private var entries: [Entry] = []
    private var freeSlots: [Int] = []

    private static func token(slot: Int, generation: UInt32) -> UInt64 {
        UInt64(generation) << 32 | UInt64(slot)
    }

    mutating func insert(_ channel: SocketChannel) -> UInt64 {
        if let slot = freeSlots.popLast() {
            entries[slot].generation &+= 1
            entries[slot].channel = channel
            return Self.token(slot: slot, generation: entries[slot].generation)
        }
        entries.append(Entry(generation: 1, channel: channel))
        return Self.token(slot: entries.count - 1, generation: 1)
    }

    /// The slot `token` names, when that slot still belongs to the token's generation.
    private func slot(of token: UInt64) -> Int? {
        let slot = Int(truncatingIfNeeded: token & 0xFFFF_FFFF)
        guard slot < entries.count, entries[slot].generation == UInt32(truncatingIfNeeded: token >> 32) else { return nil }
        return slot
    }

    func channel(for token: UInt64) -> SocketChannel? {
        slot(of: token).flatMap { entries[$0].channel }
    }

    mutating func remove(token: UInt64) {
        guard let slot = slot(of: token), entries[slot].channel != nil else { return }
        entries[slot].channel = nil
        freeSlots.append(slot)
    }

    func forEach(_ body: (UInt64, SocketChannel) -> Void) {
        for (slot, entry) in entries.enumerated() {
            if let channel = entry.channel { body(Self.token(slot: slot, generation: entry.generation), channel) }
        }
    }
}
