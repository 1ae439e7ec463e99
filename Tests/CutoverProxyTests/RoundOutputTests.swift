@testable import CutoverCore
@testable import CutoverProxy
import Foundation
import Glibc
import XCTest

/// Small writes made while the poller handles a round of events wait for the round's end, then go
/// out in the order written; anything that must not wait (a big write, a close, a hand-over to a
/// tunnel) sends them first. Real sockets (a socket pair), no poller events: each test runs one
/// round by hand on the worker's queue.
final class RoundOutputTests: XCTestCase {
    /// One worker for the whole class: its poller thread lives as long as the process.
    private static let worker = Worker(index: 0, cpu: nil, accessLog: nil, settings: ConnectionSettings(Config(listeners: [], profiles: [])))

    private final class Recorder: ChannelHandler {
        var readable = 0
        func channelReadable(_ channel: SocketChannel) { readable += 1 }
        func channelDrained(_ channel: SocketChannel) {}
    }

    /// A deferring channel on one end of a socket pair, and the other end (blocking reads).
    private func makePair() throws -> (channel: SocketChannel, peer: Int32) {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds), 0)
        _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
        let channel = Self.worker.queue.sync { SocketChannel(fd: fds[0], worker: Self.worker) }
        Self.worker.queue.sync { channel.defersWrites = true }
        addTeardownBlock {
            Self.worker.queue.sync { channel.close() }
            close(fds[1])
        }
        return (channel, fds[1])
    }

    /// What the peer can read now without waiting.
    private func readAvailable(_ fd: Int32) -> [UInt8] {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n <= 0 { return received }
            received += buffer[0..<n]
        }
    }

    private func inRound(_ body: () -> Void) {
        Self.worker.queue.sync { Self.worker.poller.handleRound(body) }
    }

    func testSmallWritesInARound_waitForItsEnd_thenArriveInOrder() throws {
        let (channel, peer) = try makePair()
        var seenDuringRound: [UInt8] = [0xFF]
        inRound {
            XCTAssertTrue(channel.write(Array("GET / HTTP/1.1\r\n".utf8)))
            XCTAssertTrue(channel.write(Array("\r\n".utf8)))
            seenDuringRound = readAvailable(peer)
            XCTAssertFalse(channel.hasPendingOutput, "bytes waiting for the round are not output the kernel refused")
        }
        XCTAssertEqual(seenDuringRound, [], "nothing may leave before the round ends")
        XCTAssertEqual(String(decoding: readAvailable(peer), as: UTF8.self), "GET / HTTP/1.1\r\n\r\n")
    }

    func testWritesOutsideARound_goOutAtOnce() throws {
        let (channel, peer) = try makePair()
        Self.worker.queue.sync { XCTAssertTrue(channel.write(Array("now".utf8))) }
        XCTAssertEqual(String(decoding: readAvailable(peer), as: UTF8.self), "now")
    }

    func testABigWrite_sendsTheWaitingOnesFirst_andLaterSmallOnesFollowIt() throws {
        let (channel, peer) = try makePair()
        let big = [UInt8](repeating: UInt8(ascii: "b"), count: 20_000)
        var seenAfterBig: [UInt8] = []
        inRound {
            channel.write(Array("head;".utf8))
            channel.write(big)
            seenAfterBig = readAvailable(peer)
            channel.write(Array(";tail".utf8))
        }
        XCTAssertEqual(seenAfterBig, Array("head;".utf8) + big, "a write that does not wait goes out behind the ones that did")
        XCTAssertEqual(String(decoding: readAvailable(peer), as: UTF8.self), ";tail")
    }

    func testTwoBufferWrite_sendsTheWaitingOnesFirst() throws {
        let (channel, peer) = try makePair()
        inRound {
            channel.write(Array("1".utf8))
            Array("2".utf8).withUnsafeBytes { first in
                Array("3".utf8).withUnsafeBytes { second in _ = channel.write(first, second) }
            }
        }
        XCTAssertEqual(String(decoding: readAvailable(peer), as: UTF8.self), "123")
    }

    func testClosingInARound_sendsWhatWaited_thenEndsTheStream() throws {
        let (channel, peer) = try makePair()
        inRound {
            channel.write(Array("HTTP/1.1 400 Bad Request\r\n\r\n".utf8))
            channel.close()
        }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = buffer.withUnsafeMutableBytes { recv(peer, $0.baseAddress, $0.count, 0) }
        XCTAssertEqual(String(decoding: buffer[0..<max(n, 0)], as: UTF8.self), "HTTP/1.1 400 Bad Request\r\n\r\n")
        let end = buffer.withUnsafeMutableBytes { recv(peer, $0.baseAddress, $0.count, 0) }
        XCTAssertEqual(end, 0, "end of stream after the answer")
    }

    func testTurningDeferralOff_sendsWhatWaited() throws {
        let (channel, peer) = try makePair()
        var seen: [UInt8] = []
        inRound {
            channel.write(Array("before the tunnel".utf8))
            channel.defersWrites = false
            seen = readAvailable(peer)
            channel.write(Array("!".utf8))
            seen += readAvailable(peer)
        }
        XCTAssertEqual(String(decoding: seen, as: UTF8.self), "before the tunnel!")
    }

    func testSendDeferredWritesNow_tellsWhatTheKernelDidNotTake() throws {
        let (channel, peer) = try makePair()
        // More than the pair's buffers hold, in small writes: the round's end cannot send it all.
        let chunk = [UInt8](repeating: UInt8(ascii: "x"), count: 8_192)
        var pendingAfterFlush = false
        inRound {
            for _ in 0..<256 { channel.write(chunk) }
            XCTAssertFalse(channel.hasPendingOutput)
            channel.sendDeferredWritesNow()
            pendingAfterFlush = channel.hasPendingOutput
        }
        XCTAssertTrue(pendingAfterFlush, "what the kernel refused is queued and shows as pending output")
        var total = 0
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let deadline = Date().addingTimeInterval(10)
        while total < 256 * chunk.count && Date() < deadline {
            // The queue drains as the socket takes more (what the poller's writable event does).
            Self.worker.queue.sync { if channel.hasPendingOutput { channel.writable() } }
            let n = buffer.withUnsafeMutableBytes { recv(peer, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { total += n }
        }
        XCTAssertEqual(total, 256 * chunk.count, "every byte arrives, once")
    }

    func testAPeerGoneAtTheRoundsEnd_isReportedToTheOwner_andTheNextReadFails() throws {
        let (channel, peer) = try makePair()
        let recorder = Recorder()
        Self.worker.queue.sync { channel.handler = recorder }
        shutdown(peer, Int32(SHUT_RDWR))
        inRound {
            XCTAssertTrue(channel.write(Array("lost".utf8)), "the write itself is accepted; the round's end finds the peer gone")
        }
        Self.worker.queue.sync {
            XCTAssertEqual(recorder.readable, 1)
            var byte: UInt8 = 0
            XCTAssertEqual(withUnsafeMutableBytes(of: &byte) { channel.read(into: $0) }, -2)
            channel.handler = nil
        }
    }
}
