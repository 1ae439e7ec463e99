@testable import CutoverProxy
import Foundation
import Glibc
import XCTest

/// A log destination that stops taking bytes costs dropped, counted lines, never a blocked caller;
/// what was accepted arrives whole and in order.
final class LogWriterTests: XCTestCase {
    func testStalledDestination_dropsAndCountsLines_withoutBlockingTheCaller_thenDeliversTheRestInOrder() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        defer {
            close(fds[0])
            close(fds[1])
        }
        // Fill the pipe so the writer thread blocks on its first write.
        _ = fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK)
        var filler = [UInt8](repeating: UInt8(ascii: "."), count: 4096)
        var filled = 0
        while true {
            let n = filler.withUnsafeMutableBytes { Glibc.write(fds[1], $0.baseAddress, $0.count) }
            if n <= 0 { break }
            filled += n
        }
        _ = fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) & ~O_NONBLOCK)

        let writer = LogWriter(fd: fds[1], capacity: 100, name: "test.log")
        var accepted: [String] = []
        var refused = 0
        let started = Date()
        for index in 0..<50 {
            var line = "line \(index)\n"
            let ok = line.withUTF8 { writer.submit(UnsafeRawBufferPointer($0), lines: 1) }
            if ok { accepted.append(line) } else { refused += 1 }
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 5, "submit blocked on a stalled destination")
        XCTAssertGreaterThan(refused, 0, "a 100-byte buffer took 50 lines")
        XCTAssertEqual(writer.droppedLines, refused)

        // Unblock: read everything, the filler first, then the accepted lines in order.
        let expected = accepted.joined()
        var received: [UInt8] = []
        let deadline = Date().addingTimeInterval(10)
        _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
        while received.count < filled + expected.utf8.count, Date() < deadline {
            let n = filler.withUnsafeMutableBytes { Glibc.read(fds[0], $0.baseAddress, $0.count) }
            if n > 0 { received += filler[0..<n] } else { usleep(1000) }
        }
        XCTAssertEqual(String(decoding: received.dropFirst(filled), as: UTF8.self), expected)
    }
}
