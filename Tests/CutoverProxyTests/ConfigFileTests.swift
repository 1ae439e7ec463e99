import CutoverCore
import CutoverProxy
import Foundation
import XCTest

/// The edge loader: it reads the config and its page files from disk and hands the bytes to the core.
final class ConfigFileTests: XCTestCase {
    private var tempDirectory = ""

    override func setUpWithError() throws {
        tempDirectory = NSTemporaryDirectory() + "cutover-config-file-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: tempDirectory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: tempDirectory)
    }

    /// The examples in Config/ are what operators copy: they must always load.
    func testEveryFileInConfigFolder_loads() throws {
        let configDir = Self.packageRoot + "/Config"
        let files = try FileManager.default.contentsOfDirectory(atPath: configDir).filter { $0.hasSuffix(".json") }.sorted()
        XCTAssertTrue(files.contains("cutover.json") && files.contains("demo.json") && files.contains("full-reference.json"), "\(files)")
        for name in files {
            XCTAssertNoThrow(try ConfigFile.load(path: configDir + "/" + name), name)
        }
    }

    func testShippedDefaultConfig() throws {
        let config = try ConfigFile.load(path: Self.packageRoot + "/Config/cutover.json")
        XCTAssertEqual(config.listeners, [ListenerConfig(name: "web", address: HostPort(host: "127.0.0.1", port: 8080), mode: .http, profile: "web")])
        XCTAssertEqual(config.profiles[0].endpoints.map(\.name), ["blue", "green"])
        XCTAssertEqual(config.profiles[0].endpoints.map(\.address.port), [9001, 9002])
        XCTAssertEqual(config.profiles[0].endpoints.map(\.state), [.online, .offline])
        XCTAssertEqual(config.profiles[0].probe?.path, "/healthz")
        XCTAssertEqual(config.admin.socket, "/tmp/cutover/admin.sock")
        XCTAssertEqual(config.admin.http, HostPort(host: "127.0.0.1", port: 9900))
        XCTAssertEqual(config.stateFile, "/tmp/cutover/state.json")
    }

    func testDemoConfig() throws {
        let config = try ConfigFile.load(path: Self.packageRoot + "/Config/demo.json")
        XCTAssertEqual(config.listeners.map(\.name), ["demo"])
        XCTAssertEqual(config.listeners[0].address, HostPort(host: "127.0.0.1", port: 8080))
        let demo = try XCTUnwrap(config.profile(named: "demo"))
        XCTAssertEqual(demo.endpoints.map(\.address.port), [8081, 8082])
        XCTAssertEqual(demo.endpoints.map(\.state), [.online, .offline])
        XCTAssertEqual(demo.probe, ProbeConfig(path: "/healthz", interval: .seconds(1), timeout: .milliseconds(500), rise: 1, fall: 2))
        XCTAssertEqual(demo.drainTimeout, .seconds(10))
        XCTAssertEqual(config.admin.socket, "/tmp/cutover-demo.sock")
        XCTAssertEqual(config.admin.http, HostPort(host: "127.0.0.1", port: 9901))
    }

    func testUnreadableFile_reportsOSReason() {
        let path = tempDirectory + "/missing.json"
        assertError(try ConfigFile.load(path: path), errorFile: path, key: "", contains: "cannot read: No such file or directory")
    }

    func testMaintenance_pageFileIsReadRelativeToTheConfig() throws {
        try "<p>soon</p>".write(toFile: tempDirectory + "/page.html", atomically: true, encoding: .utf8)
        try Self.config(pageFile: "page.html").write(toFile: tempDirectory + "/c.json", atomically: true, encoding: .utf8)
        let config = try ConfigFile.load(path: tempDirectory + "/c.json")
        XCTAssertEqual(config.profiles[0].gate.maintenancePage, "<p>soon</p>")
        XCTAssertEqual(config.profiles[0].gate.maintenancePageFile, tempDirectory + "/page.html")
    }

    func testMaintenance_missingPageFile_namesFileKeyAndOSReason() throws {
        let path = tempDirectory + "/c.json"
        try Self.config(pageFile: "absent.html").write(toFile: path, atomically: true, encoding: .utf8)
        assertError(
            try ConfigFile.load(path: path), errorFile: path, key: "profiles[0].maintenance.page_file",
            contains: "cannot read \(tempDirectory)/absent.html: No such file or directory")
    }

    // MARK: - Helpers

    /// The package root, found from this file's path (Tests/CutoverProxyTests/ConfigFileTests.swift).
    static var packageRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    private static func config(pageFile: String) -> String {
        #"{"listeners": [{"name":"web","address":"127.0.0.1:8080","profile":"web"}], "profiles": [{"name": "web", "endpoints": [{"name":"blue","address":"127.0.0.1:9001"}], "maintenance": {"page_file": "\#(pageFile)"}}]}"#
    }

    private func assertError(
        _ body: @autoclosure () throws -> Config, errorFile: String, key: String, contains reason: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        do {
            _ = try body()
            XCTFail("expected an error at \(key.isEmpty ? "(root)" : key)", file: file, line: line)
        } catch let error as ConfigError {
            XCTAssertEqual(error.file, errorFile, file: file, line: line)
            XCTAssertEqual(error.key, key, "\(error)", file: file, line: line)
            XCTAssertTrue(error.reason.contains(reason), "\(error.reason) does not contain \(reason)", file: file, line: line)
        } catch {
            XCTFail("not a ConfigError: \(error)", file: file, line: line)
        }
    }
}
