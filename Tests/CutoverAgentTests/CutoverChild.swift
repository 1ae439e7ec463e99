import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A `cutover` child process (backend, proxy or upgrade runner) with its output in a file; killed
/// (SIGKILL) by `stop`, so a test's tearDown never waits on it.
final class CutoverChild {
    let process = Process()
    let log: String

    init(_ binary: String, _ arguments: [String], log: String) throws {
        self.log = log
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        defer { try? handle.close() }
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    var isRunning: Bool { process.isRunning }

    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// The built `cutover` binary, beside the test bundle.
    static var binary: String {
        get throws {
            let candidates = [
                URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("cutover").path,
                Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("cutover").path,
                Bundle.main.bundleURL.appendingPathComponent("cutover").path,
            ]
            guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
                throw FixtureError("cutover binary not found in \(candidates)")
            }
            return found
        }
    }
}
