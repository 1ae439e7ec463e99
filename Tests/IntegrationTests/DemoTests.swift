import Foundation
import Glibc
import XCTest

/// `cutover demo` and the shipped example configs.
final class DemoTests: XCTestCase {
    /// The demo serves blue, and after `switch demo green` (once green's probe passed) serves green.
    func testDemo_switchesFromBlueToGreen() throws {
        let dir = try TemporaryDirectory()
        let socket = dir.path("demo.sock")
        let demo = try ChildProcess(CutoverBinary.url, ["demo", "--port", "0", "--admin-socket", socket], directory: dir, label: "demo")
        defer { demo.stop() }
        var port: UInt16 = 0
        XCTAssertTrue(waitUntil(timeout: 15) {
            guard let line = demo.stdout.split(separator: "\n").first(where: { $0.hasPrefix("proxy listening on http://127.0.0.1:") }),
                  let value = UInt16(line.dropFirst("proxy listening on http://127.0.0.1:".count).dropLast()) else { return false }
            port = value
            return true
        }, "demo did not start: \(demo.stdout) \(demo.stderr)")
        XCTAssertTrue(demo.stdout.contains("switch demo green"), "the demo prints how to switch")
        XCTAssertEqual(try curl("http://127.0.0.1:\(port)/").body, "blue\n")
        let ctl = { (words: [String]) in try IntegrationTests.run(CutoverBinary.url.path, ["ctl", "--socket", socket] + words) }
        func greenHealth() -> String? {
            guard let output = try? ctl(["show", "endpoints", "--json"]).stdout,
                  let object = try? JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any],
                  let endpoints = object["endpoints"] as? [[String: Any]] else { return nil }
            return endpoints.first { $0["name"] as? String == "green" }?["health"] as? String
        }
        XCTAssertTrue(waitUntil(timeout: 5) { greenHealth() == "up" }, "green's probe never passed")
        let switched = try ctl(["switch", "demo", "green"])
        XCTAssertEqual(switched.status, 0, switched.stdout)
        XCTAssertEqual(try curl("http://127.0.0.1:\(port)/").body, "green\n")
    }

    /// The demo's built-in config is Config/demo.json, so the demo also runs outside a checkout.
    func testBuiltInDemoConfig_matchesConfigDemoJSON() throws {
        let dir = try TemporaryDirectory()
        let file = try String(contentsOf: CutoverBinary.packageRoot.appendingPathComponent("Config/demo.json"), encoding: .utf8)
        // `--check` of both prints the same summary; comparing the text keeps the copy honest.
        let shipped = try IntegrationTests.run(CutoverBinary.url.path, ["proxy", "--config", CutoverBinary.packageRoot.appendingPathComponent("Config/demo.json").path, "--check"])
        XCTAssertEqual(shipped.status, 0, shipped.stderr)
        let builtIn = try IntegrationTests.run(CutoverBinary.url.path, ["demo", "--print-config"])
        XCTAssertEqual(builtIn.status, 0, builtIn.stderr)
        XCTAssertEqual(builtIn.stdout.trimmingCharacters(in: .whitespacesAndNewlines), file.trimmingCharacters(in: .whitespacesAndNewlines))
        _ = dir
    }

    /// Every shipped config validates with `cutover proxy --check`; a broken one names file, key and reason.
    func testCheck_validatesShippedConfigs_andNamesTheKeyOfAnError() throws {
        for name in ["cutover.json", "demo.json", "full-reference.json"] {
            let path = CutoverBinary.packageRoot.appendingPathComponent("Config/\(name)").path
            let result = try IntegrationTests.run(CutoverBinary.url.path, ["proxy", "--config", path, "--check"])
            // `--check` also runs start's machine checks (issue 17): the reference's socket group
            // "cutover" (the .deb creates it) may not exist here, and then that alone is refused.
            if name == "full-reference.json", getgrnam("cutover") == nil {
                XCTAssertEqual(result.status, 1, "\(name): \(result.stdout)")
                XCTAssertTrue(result.stderr.contains("admin.socket_group: no group named \"cutover\" on this machine"), "\(name): \(result.stderr)")
                continue
            }
            XCTAssertEqual(result.status, 0, "\(name): \(result.stderr)")
        }
        let dir = try TemporaryDirectory()
        let broken = try dir.write("broken.json", #"{ "listeners": [{ "name": "web", "address": "127.0.0.1:8080", "profile": "web" }], "profiles": [{ "name": "web", "endpoints": [{ "name": "blue", "address": "10.0.0.5" }] }] }"#)
        let result = try IntegrationTests.run(CutoverBinary.url.path, ["proxy", "--config", broken, "--check"])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("broken.json: profiles[0].endpoints[0].address: \"10.0.0.5\" has no port"), result.stderr)
    }
}
