import Foundation
import XCTest

/// `.ci/check-layering` run by `swift test` too: the package's imports point inward, and the check
/// itself catches a wrong import (proved on a scratch tree, so it cannot pass vacuously).
final class LayeringTests: XCTestCase {
    private let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    private func checkLayering(_ root: URL) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [packageRoot.appendingPathComponent(".ci/check-layering").path, root.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        try pipe.fileHandleForReading.close()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }

    func testPackage_importsPointInward() throws {
        let result = try checkLayering(packageRoot)
        XCTAssertEqual(result.status, 0, result.output)
    }

    func testAgentImportingTheProxy_failsNamingFileAndLine() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("layering-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let agent = scratch.appendingPathComponent("Sources/CutoverAgent/Flags")
        let core = scratch.appendingPathComponent("Sources/CutoverCore")
        try FileManager.default.createDirectory(at: agent, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: core, withIntermediateDirectories: true)
        try "import Foundation\nimport CutoverProxy\n".write(to: agent.appendingPathComponent("Bad.swift"), atomically: true, encoding: .utf8)
        try "import Foundation\n".write(to: core.appendingPathComponent("Fine.swift"), atomically: true, encoding: .utf8)
        let agentOnly = try checkLayering(scratch)
        XCTAssertEqual(agentOnly.status, 1, agentOnly.output)
        XCTAssertTrue(agentOnly.output.contains("Sources/CutoverAgent/Flags/Bad.swift:2:"), agentOnly.output)
        XCTAssertFalse(agentOnly.output.contains("Fine.swift"), agentOnly.output)

        try "import Foundation\n".write(to: agent.appendingPathComponent("Bad.swift"), atomically: true, encoding: .utf8)
        try "@testable import CutoverAgent\n".write(to: core.appendingPathComponent("Fine.swift"), atomically: true, encoding: .utf8)
        let coreOnly = try checkLayering(scratch)
        XCTAssertEqual(coreOnly.status, 1, coreOnly.output)
        XCTAssertTrue(coreOnly.output.contains("Sources/CutoverCore/Fine.swift:1:"), coreOnly.output)
    }
}
