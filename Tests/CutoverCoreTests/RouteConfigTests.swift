import CutoverCore
import XCTest

/// A listener's `routes` key: decoded into the model, and each mistake refused with its key path.
final class RouteConfigTests: XCTestCase {
    private let profiles = """
        "profiles": [
          { "name": "web", "endpoints": [{ "name": "a", "address": "127.0.0.1:9001" }] },
          { "name": "api", "endpoints": [{ "name": "a", "address": "127.0.0.1:9002" }] },
          { "name": "docs", "endpoints": [{ "name": "a", "address": "127.0.0.1:9003" }] }
        ]
        """

    private func config(routes: String, mode: String = "http", profile: String? = "\"web\"") throws -> Config {
        let profileKey = profile.map { #""profile": \#($0), "# } ?? ""
        return try ConfigLoader.parse(
            """
            { "listeners": [{ "name": "front", "address": "127.0.0.1:0", "mode": "\(mode)", \(profileKey)"routes": \(routes) }], \(profiles) }
            """, file: "c.json")
    }

    private func assertRefused(
        routes: String, mode: String = "http", profile: String? = "\"web\"", key: String, contains reason: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        do {
            _ = try config(routes: routes, mode: mode, profile: profile)
            XCTFail("expected an error at \(key)", file: file, line: line)
        } catch let error as ConfigError {
            XCTAssertEqual(error.key, key, "\(error)", file: file, line: line)
            XCTAssertTrue(error.reason.contains(reason), "\(error.reason) does not contain \(reason)", file: file, line: line)
        } catch {
            XCTFail("not a ConfigError: \(error)", file: file, line: line)
        }
    }

    func testRoutes_decodeEveryKey() throws {
        let config = try config(routes: """
            [{ "host": "api.example.com", "path_prefix": "/v1", "strip_prefix": true, "profile": "api" },
             { "host": "*.docs.example.com", "profile": "docs" },
             { "path_prefix": "/static", "profile": "docs" }]
            """)
        XCTAssertEqual(config.listeners[0].routes, [
            RouteConfig(host: "api.example.com", pathPrefix: "/v1", stripPrefix: true, profile: "api"),
            RouteConfig(host: "*.docs.example.com", profile: "docs"),
            RouteConfig(pathPrefix: "/static", profile: "docs"),
        ])
        XCTAssertEqual(config.listeners[0].profile, "web")
        XCTAssertEqual(config.listeners[0].profilesReached, ["api", "docs", "web"])
        XCTAssertEqual(config.listeners[0].routes[0].summary, "api.example.com/v1 (strip)")
        XCTAssertEqual(config.listeners[0].routes[2].summary, "*/static")
    }

    func testListenerWithRoutes_mayHaveNoDefault() throws {
        let config = try config(routes: #"[{ "host": "a.test", "profile": "api" }]"#, profile: nil)
        XCTAssertNil(config.listeners[0].profile)
        XCTAssertEqual(config.listeners[0].routingSummary, "1 route, no default profile")
    }

    func testListenerWithoutRoutesOrProfile_isRefused() {
        assertRefused(routes: "[]", profile: nil, key: "listeners[0].profile", contains: "only a listener with routes may leave it out")
    }

    func testUnknownRouteKey_listsTheValidOnes() {
        assertRefused(routes: #"[{ "hostname": "a.test", "profile": "api" }]"#, key: "listeners[0].routes[0].hostname",
                      contains: "expected one of: host, path_prefix, strip_prefix, profile")
    }

    func testUnknownProfile_isRefused() {
        assertRefused(routes: #"[{ "host": "a.test", "profile": "ap" }]"#, key: "listeners[0].routes[0].profile",
                      contains: #"no profile named "ap" (profiles: web, api, docs)"#)
        assertRefused(routes: #"[{ "host": "a.test" }]"#, key: "listeners[0].routes[0].profile", contains: "required key is missing")
    }

    func testDuplicateRoutes_areRefusedWithBothPaths() {
        assertRefused(
            routes: #"[{ "host": "a.test", "path_prefix": "/x", "profile": "api" }, { "host": "b.test", "profile": "api" }, { "host": "A.Test.", "path_prefix": "/x", "profile": "docs" }]"#,
            key: "listeners[0].routes[2]", contains: "matches exactly the same requests as listeners[0].routes[0] (a.test/x)")
        assertRefused(routes: #"[{ "host": "*.a.test", "profile": "api" }, { "host": "*.A.test", "profile": "docs" }]"#,
                      key: "listeners[0].routes[1]", contains: "matches exactly the same requests as listeners[0].routes[0]")
        assertRefused(routes: #"[{ "path_prefix": "/x", "profile": "api" }, { "path_prefix": "/x", "strip_prefix": true, "profile": "docs" }]"#,
                      key: "listeners[0].routes[1]", contains: "matches exactly the same requests")
    }

    func testOverlappingButDifferentRoutes_areAccepted() throws {
        let config = try config(routes: """
            [{ "host": "a.test", "profile": "api" }, { "host": "*.a.test", "profile": "api" },
             { "host": "a.test", "path_prefix": "/x", "profile": "docs" }, { "path_prefix": "/x", "profile": "docs" }]
            """)
        XCTAssertEqual(config.listeners[0].routes.count, 4)
    }

    func testRouteMatchingEverything_isRefused() {
        assertRefused(routes: #"[{ "profile": "api" }]"#, key: "listeners[0].routes[0]", contains: #"make "api" the listener's profile instead"#)
    }

    func testBadHosts_areRefused() {
        let cases: [(String, String)] = [
            ("a.test:8080", "has a port"),
            ("*example.com", "a wildcard is written *.example.com"),
            ("a.*.test", "a wildcard is written *.example.com"),
            ("*", "a wildcard is written *.example.com"),
            ("a..test", "is not a host name"),
            ("http://a.test", "without scheme or path"),
            ("a test", "is not a host name"),
            ("", "is not a host name"),
            ("[::g]", "is not an IPv6 address"),
        ]
        for (host, reason) in cases {
            assertRefused(routes: #"[{ "host": "\#(host)", "profile": "api" }]"#, key: "listeners[0].routes[0].host", contains: reason)
        }
    }

    func testGoodHosts_areAccepted() throws {
        for host in ["a.test", "A-1.Example.COM", "*.example.com", "10.0.0.5", "[::1]", "a.test.", "localhost"] {
            XCTAssertNoThrow(try config(routes: #"[{ "host": "\#(host)", "profile": "api" }]"#), host)
        }
    }

    func testBadPathPrefixes_areRefused() {
        let cases: [(String, String)] = [
            ("api", #"must start with "/""#),
            ("/", "matches every path: leave path_prefix out"),
            ("/api/", #"write "/api""#),
            ("/a b", "contains a space"),
            ("/api?x=1", #""?""#),
        ]
        for (prefix, reason) in cases {
            assertRefused(routes: #"[{ "path_prefix": "\#(prefix)", "profile": "api" }]"#, key: "listeners[0].routes[0].path_prefix", contains: reason)
        }
    }

    func testStripPrefixWithoutPrefix_isRefused() {
        assertRefused(routes: #"[{ "host": "a.test", "strip_prefix": true, "profile": "api" }]"#,
                      key: "listeners[0].routes[0].strip_prefix", contains: "needs a path_prefix")
    }

    func testTCPListener_routesByServerNameOnly() throws {
        assertRefused(routes: #"[{ "host": "a.test", "path_prefix": "/x", "profile": "api" }]"#, mode: "tcp",
                      key: "listeners[0].routes[0].path_prefix", contains: "routes by TLS server name (SNI) only")
        let config = try config(routes: #"[{ "host": "*.db.test", "profile": "api" }]"#, mode: "tcp", profile: nil)
        XCTAssertEqual(config.listeners[0].mode, .tcp)
    }

    func testFlagBuiltConfig_isValidatedToo() {
        let config = Config(
            listeners: [ListenerConfig(name: "x", address: HostPort(host: "127.0.0.1", port: 0), mode: .http, profile: nil)],
            profiles: [ProfileConfig(name: "web", endpoints: [EndpointConfig(name: "a", address: HostPort(host: "127.0.0.1", port: 1))])])
        XCTAssertThrowsError(try ConfigLoader.validate(config, file: "command line")) { error in
            XCTAssertEqual((error as? ConfigError)?.key, "listeners[0].profile")
        }
    }
}
