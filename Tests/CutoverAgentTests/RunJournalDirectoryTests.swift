import CutoverAgent
import CutoverCore
import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The run journal directory: durable lines, torn lines, the lock.
final class RunJournalDirectoryTests: XCTestCase {
    private var path = ""

    override func setUp() {
        path = NSTemporaryDirectory() + "cutover-journal-dir-\(UUID().uuidString)"
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: path)
    }

    func entry(_ event: RunJournalEntry.Event, _ index: Int? = nil) -> RunJournalEntry {
        RunJournalEntry(event: event, time: "t", index: index)
    }

    func testTornLine_isSkipped_andTheNextAppendStartsAFreshLine() throws {
        let directory = RunJournalDirectory(path: path)
        let lock = try directory.lock()
        defer { lock.release() }
        try directory.append(entry(.stepStarted, 0))
        // A runner killed inside a write leaves half a line.
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: directory.journalPath))
        handle.seekToEndOfFile()
        handle.write(Data(#"{"event":"step_fin"#.utf8))
        try handle.close()
        XCTAssertEqual(try directory.entries()?.count, 1, "a torn last line is ignored")
        try directory.append(entry(.stepFinished, 0))
        XCTAssertEqual(try directory.entries()?.map(\.event), [.stepStarted, .stepFinished])
    }

    func testLock_isExclusive_andReleased() throws {
        let directory = RunJournalDirectory(path: path)
        let first = try directory.lock()
        XCTAssertTrue(directory.isLockHeld())
        XCTAssertThrowsError(try directory.lock()) { error in
            XCTAssertTrue("\(error)".contains("(pid \(getpid())) holds \(self.path)/lock"), "\(error)")
        }
        first.release()
        XCTAssertFalse(directory.isLockHeld())
        try directory.lock().release()
    }
}
