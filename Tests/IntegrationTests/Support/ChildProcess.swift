import Foundation
import Glibc

/// Starts `process`, one start at a time across the whole test process.
///
/// Foundation's `Process.run()` on Linux learns that a child has exited from a socketpair whose
/// end the child inherits. It creates that pair without close-on-exec, and it closes the other
/// descriptors in the child by a list made from `/proc/self/fd` just before the spawn. A socket made
/// by a start on another thread in between is missing from that list and passes to this child too,
/// and the other child's exit then goes unseen until this one exits. Tests that start clients on
/// threads while the test thread runs `ctl` can land in that window; one start at a time closes it.
func launch(_ process: Process) throws {
    try processStartLock.withLock { try process.run() }
}

private let processStartLock = NSLock()

/// A child process whose output is captured to files, always killed when the test ends.
final class ChildProcess {
    let process = Process()
    let stdoutPath: String
    let stderrPath: String
    private(set) var stopped = false
    /// The child's output files; the child has its own copies, ours are closed once it has started.
    private var outputHandles: [FileHandle] = []

    init(_ executable: URL, _ arguments: [String], directory: TemporaryDirectory, label: String, environment: [String: String]? = nil) throws {
        stdoutPath = directory.path("\(label).out")
        stderrPath = directory.path("\(label).err")
        _ = FileManager.default.createFile(atPath: stdoutPath, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.executableURL = executable
        process.arguments = arguments
        outputHandles = [try FileHandle(forWritingTo: URL(fileURLWithPath: stdoutPath)), try FileHandle(forWritingTo: URL(fileURLWithPath: stderrPath))]
        process.standardOutput = outputHandles[0]
        process.standardError = outputHandles[1]
        process.standardInput = FileHandle.nullDevice
        if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new } }
        try launch(process)
        for handle in outputHandles { try? handle.close() }
        outputHandles = []
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }
    var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// Sends a signal (SIGTERM, SIGHUP, SIGKILL...).
    func signal(_ number: Int32) { kill(pid, number) }

    /// Waits for exit up to `timeout`; returns the exit status, or nil if still running.
    func waitForExit(timeout: TimeInterval = 10) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        return process.isRunning ? nil : process.terminationStatus
    }

    /// Stops the process (SIGTERM, then SIGKILL after 5 s) and waits for it.
    func stop() {
        guard !stopped else { return }
        stopped = true
        if process.isRunning {
            kill(pid, SIGTERM)
            if waitForExit(timeout: 5) == nil {
                kill(pid, SIGKILL)
                process.waitUntilExit()
            }
        }
    }

    deinit { stop() }
}

/// Runs a command to completion and returns its exit status and output.
@discardableResult
func run(_ executable: String, _ arguments: [String], input: String? = nil, timeout: TimeInterval = 60) throws -> (status: Int32, stdout: String, stderr: String) {
    // Output goes to files, not pipes: a chatty child can never block on a full pipe.
    let directory = try TemporaryDirectory()
    let outPath = directory.path("out")
    let errPath = directory.path("err")
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    // Closed explicitly below: a FileHandle made this way is not closed when released, and every
    // curl and ctl call of a long test run would keep two descriptors open.
    var handles = [try FileHandle(forWritingTo: URL(fileURLWithPath: outPath)), try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))]
    process.standardOutput = handles[0]
    process.standardError = handles[1]
    if let input {
        let inPath = try directory.write("in", input)
        handles.append(try FileHandle(forReadingFrom: URL(fileURLWithPath: inPath)))
        process.standardInput = handles[2]
    } else {
        process.standardInput = FileHandle.nullDevice
    }
    defer { for handle in handles { try? handle.close() } }
    try launch(process)
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(5_000) }
    if process.isRunning {
        process.terminate()
        process.waitUntilExit()
    }
    let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
    return (process.terminationStatus, out, err)
}
