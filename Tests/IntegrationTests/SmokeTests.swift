import XCTest

/// The shortest end-to-end path: a backend, the proxy from flags-equivalent config, one request.
final class SmokeTests: XCTestCase {
    func testRequestReachesOnlineEndpoint_andSwitchMovesIt() throws {
        let dir = try TemporaryDirectory()
        let blue = try Backend(name: "blue", directory: dir)
        let green = try Backend(name: "green", directory: dir)
        let socket = dir.path("admin.sock")
        let proxy = try Proxy(config: blueGreenConfig(blue: blue, green: green, socket: socket), directory: dir, socketPath: socket)
        defer { proxy.stop(); blue.stop(); green.stop() }

        XCTAssertEqual(try curl(proxy.url()).body, "blue\n")
        let switched = try proxy.ctl("switch", "web", "green")
        XCTAssertEqual(switched.status, 0, switched.stdout + switched.stderr)
        XCTAssertEqual(try curl(proxy.url()).body, "green\n")
    }
}
