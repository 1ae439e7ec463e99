import CutoverCore
import XCTest

/// The route table: which route a request takes, in the documented order, and what stripping its
/// prefix sends upstream.
final class RouteTableTests: XCTestCase {
    /// Routes in deliberately unsorted config order; the comment is the index.
    let routes = [
        RouteConfig(pathPrefix: "/static", profile: "assets"),  // 0
        RouteConfig(host: "*.example.com", profile: "tenants"),  // 1
        RouteConfig(host: "api.example.com", profile: "api"),  // 2
        RouteConfig(host: "api.example.com", pathPrefix: "/v2", stripPrefix: true, profile: "api2"),  // 3
        RouteConfig(host: "*.eu.example.com", profile: "eu"),  // 4
        RouteConfig(host: "api.example.com", pathPrefix: "/v2/admin", profile: "admin"),  // 5
        RouteConfig(pathPrefix: "/static/big", profile: "big"),  // 6
    ]

    private func route(_ target: String, host: String?) -> Int? {
        RouteTable(routes).match(target: target, hostHeader: host)?.route
    }

    func testExactHost_beatsWildcard() {
        XCTAssertEqual(route("/", host: "api.example.com"), 2)
        XCTAssertEqual(route("/", host: "www.example.com"), 1)
    }

    func testLongerWildcardSuffix_wins() {
        XCTAssertEqual(route("/", host: "paris.eu.example.com"), 4)
        XCTAssertEqual(route("/", host: "a.b.eu.example.com"), 4)
        XCTAssertEqual(route("/", host: "eu.example.com"), 1, "eu.example.com is one label under *.example.com")
    }

    func testWildcard_needsAtLeastOneLabel() {
        XCTAssertNil(route("/", host: "example.com"))
        XCTAssertNil(route("/", host: ".example.com"))
        XCTAssertNil(route("/", host: "notexample.com"))
        XCTAssertEqual(route("/", host: "a.b.c.example.com"), 1)
    }

    func testLongestPrefix_winsWithinAHost() {
        XCTAssertEqual(route("/v2/admin/users", host: "api.example.com"), 5)
        XCTAssertEqual(route("/v2/users", host: "api.example.com"), 3)
        XCTAssertEqual(route("/v1/users", host: "api.example.com"), 2)
        XCTAssertEqual(route("/static/big/file", host: "none.test"), 6)
        XCTAssertEqual(route("/static/small", host: "none.test"), 0)
    }

    func testHostDecidesBeforePath() {
        // The exact host's catch-all beats an any-host prefix; documented in docs/routing.md.
        XCTAssertEqual(route("/static/x", host: "api.example.com"), 2)
        XCTAssertEqual(route("/static/x", host: "www.example.com"), 1)
    }

    func testPrefix_matchesOnSegmentBoundariesOnly() {
        XCTAssertEqual(route("/static", host: "none.test"), 0)
        XCTAssertEqual(route("/static/", host: "none.test"), 0)
        XCTAssertEqual(route("/static?x=1", host: "none.test"), 0)
        XCTAssertEqual(route("/static#frag", host: "none.test"), 0)
        XCTAssertNil(route("/staticx", host: "none.test"))
        XCTAssertNil(route("/stati", host: "none.test"))
        XCTAssertNil(route("/Static", host: "none.test"), "paths are case-sensitive")
        XCTAssertNil(route("/x/static", host: "none.test"))
    }

    func testHost_isCaseInsensitive_portAndTrailingDotIgnored() {
        XCTAssertEqual(route("/", host: "API.Example.COM"), 2)
        XCTAssertEqual(route("/", host: "api.example.com:8443"), 2)
        XCTAssertEqual(route("/", host: "api.example.com."), 2)
        XCTAssertEqual(route("/", host: "api.example.com.:80"), 2)
        XCTAssertEqual(route("/", host: "WWW.EXAMPLE.COM:1"), 1)
        XCTAssertNil(route("/", host: "api.example.co"))
        XCTAssertNil(route("/", host: "xapi.example.co"))
    }

    func testIPv6Host_keepsItsBrackets() {
        let table = RouteTable([RouteConfig(host: "[::1]", profile: "local")])
        XCTAssertEqual(table.match(target: "/", hostHeader: "[::1]:8080")?.route, 0)
        XCTAssertEqual(table.match(target: "/", hostHeader: "[::1]")?.route, 0)
        XCTAssertNil(table.match(target: "/", hostHeader: "[::2]:8080"))
    }

    func testAbsoluteFormTarget_namesTheHost() {
        XCTAssertEqual(route("http://api.example.com/v2/x", host: "other.test"), 3)
        XCTAssertEqual(route("HTTPS://API.example.com:443/v2/admin", host: nil), 5)
        XCTAssertEqual(route("http://user@api.example.com/v2", host: nil), 3)
        XCTAssertEqual(route("http://www.example.com", host: nil), 1)
        XCTAssertEqual(route("http://none.test/static?q", host: "api.example.com"), 0)
        XCTAssertNil(route("http://none.test?x=/static", host: nil))
    }

    func testNoHost_matchesOnlyRoutesWithoutOne() {
        // HTTP/1.0 without Host: the parser lets it through, and only any-host routes can take it.
        XCTAssertEqual(route("/static/a", host: nil), 0)
        XCTAssertNil(route("/", host: nil))
    }

    func testAsteriskAndAuthorityForm_haveNoPath() {
        XCTAssertEqual(route("*", host: "api.example.com"), 2)
        XCTAssertNil(route("*", host: "none.test"))
        XCTAssertEqual(route("api.example.com:443", host: "other.test"), 2)
    }

    func testEqualRank_keepsConfigOrder() {
        let table = RouteTable([
            RouteConfig(host: "a.test", pathPrefix: "/xy", profile: "p"),
            RouteConfig(host: "a.test", pathPrefix: "/ab", profile: "q"),
        ])
        XCTAssertEqual(table.entries.map(\.route), [0, 1])
    }

    func testTableOrder_isTheDocumentedOne() {
        XCTAssertEqual(RouteTable(routes).entries.map(\.route), [5, 3, 2, 4, 1, 6, 0])
    }

    func testStripPrefix_rewritesTheTarget() {
        func upstream(_ target: String) -> String? {
            RouteTable(routes).match(target: target, hostHeader: "api.example.com").map { $0.upstreamTarget(target) }
        }
        XCTAssertEqual(upstream("/v2/users?id=1"), "/users?id=1")
        XCTAssertEqual(upstream("/v2"), "/")
        XCTAssertEqual(upstream("/v2?q=1"), "/?q=1")
        XCTAssertEqual(upstream("/v2/"), "/")
        XCTAssertEqual(upstream("http://api.example.com/v2/x"), "http://api.example.com/x")
        XCTAssertEqual(upstream("http://api.example.com/v2"), "http://api.example.com/")
        XCTAssertEqual(upstream("/v1/users"), "/v1/users", "a route without strip_prefix sends the target as is")
        XCTAssertEqual(upstream("/v2/admin/x"), "/v2/admin/x", "the longer non-stripping route took it")
    }

    func testByteLookup_matchesTheStringOne() {
        let table = RouteTable(routes)
        let target = Array("/v2/admin/x".utf8)
        let host = Array("API.example.com:80".utf8)
        let match = target.withUnsafeBytes { t in host.withUnsafeBytes { h in table.match(target: t, hostHeader: h) } }
        XCTAssertEqual(match, RouteMatch(route: 5, pathStart: 0, stripLength: 0))
    }

    func testServerName_matchesHostRoutes() {
        let table = RouteTable([RouteConfig(host: "db.example.com", profile: "db"), RouteConfig(host: "*.example.com", profile: "any")])
        func sni(_ name: String?) -> Int? {
            guard let name else { return table.match(host: nil, path: UnsafeRawBufferPointer(start: nil, count: 0))?.route }
            return Array(name.utf8).withUnsafeBytes { table.match(host: $0, path: UnsafeRawBufferPointer(start: nil, count: 0))?.route }
        }
        XCTAssertEqual(sni("DB.example.com"), 0)
        XCTAssertEqual(sni("x.example.com"), 1)
        XCTAssertNil(sni("example.org"))
        XCTAssertNil(sni(nil))
    }

    func testFiftyRoutes_lookUpTheRightOne() {
        let many = (0..<50).map { RouteConfig(host: "app\($0).example.com", pathPrefix: $0 % 2 == 0 ? "/api" : nil, profile: "p\($0)") }
        let table = RouteTable(many)
        for i in 0..<50 {
            XCTAssertEqual(table.match(target: "/api/x", hostHeader: "APP\(i).example.com")?.route, i)
        }
        XCTAssertEqual(table.match(target: "/other", hostHeader: "app2.example.com")?.route, nil)
        XCTAssertEqual(table.match(target: "/other", hostHeader: "app3.example.com")?.route, 3)
    }
}

/// A listener's routing in a snapshot: the profile each request gets, the default, and 404.
final class ListenerRoutingTests: XCTestCase {
    private func profile(_ name: String, index: Int) -> ProfileRoute {
        ProfileRoute(
            index: index, config: ProfileConfig(name: name, endpoints: [EndpointConfig(name: "a", address: HostPort(host: "127.0.0.1", port: 1))]),
            candidates: [], schedule: [], paused: false, maintenance: name == "api", readOnly: .off)
    }

    private func chosen(_ decision: RouteDecision) -> String? {
        switch decision {
        case .profile(let route, _): return route.name
        case .noRoute: return nil
        }
    }

    func testRoutes_resolveToTheSnapshotsProfiles() {
        let profiles = [profile("web", index: 0), profile("api", index: 1)]
        let listener = ListenerConfig(
            name: "front", address: HostPort(host: "127.0.0.1", port: 0), mode: .http, profile: "web",
            routes: [RouteConfig(host: "api.test", profile: "api")])
        let routing = ListenerRouting(listener: listener, profiles: profiles)
        guard case .profile(let api, _) = routing.decide(target: "/", hostHeader: "api.test") else { return XCTFail("api.test not routed") }
        XCTAssertTrue(api === profiles[1], "the route is the snapshot's own ProfileRoute, gates included")
        XCTAssertTrue(api.maintenance)
        XCTAssertEqual(chosen(routing.decide(target: "/", hostHeader: "web.test")), "web")
        XCTAssertEqual(chosen(routing.decide(target: "/", hostHeader: nil)), "web")
    }

    func testNoDefault_isNoRoute() {
        let listener = ListenerConfig(
            name: "front", address: HostPort(host: "127.0.0.1", port: 0), mode: .http, profile: nil,
            routes: [RouteConfig(host: "api.test", profile: "api")])
        let routing = ListenerRouting(listener: listener, profiles: [profile("api", index: 0)])
        XCTAssertNil(chosen(routing.decide(target: "/", hostHeader: "other.test")))
        XCTAssertEqual(chosen(routing.decide(target: "/", hostHeader: "api.test")), "api")
        XCTAssertNil(chosen(routing.decide(serverName: nil)))
    }

    func testWithoutRoutes_everyRequestTakesTheDefault() {
        let listener = ListenerConfig(name: "front", address: HostPort(host: "127.0.0.1", port: 0), mode: .http, profile: "web")
        let routing = ListenerRouting(listener: listener, profiles: [profile("web", index: 0)])
        XCTAssertTrue(routing.routesNothing)
        XCTAssertFalse(routing.needsServerName)
        XCTAssertEqual(chosen(routing.fallbackDecision), "web")
        XCTAssertEqual(chosen(routing.decide(target: "/x", hostHeader: "anything")), "web")
    }

    func testSnapshotBuild_carriesEveryListenersRouting() {
        let endpoint = EndpointConfig(name: "a", address: HostPort(host: "127.0.0.1", port: 1))
        let config = Config(
            listeners: [
                ListenerConfig(name: "front", address: HostPort(host: "127.0.0.1", port: 0), mode: .http, profile: "web",
                               routes: [RouteConfig(pathPrefix: "/api", profile: "api")]),
                ListenerConfig(name: "tls", address: HostPort(host: "127.0.0.1", port: 0), mode: .tcp, profile: nil,
                               routes: [RouteConfig(host: "db.test", profile: "api")]),
            ],
            profiles: [ProfileConfig(name: "web", endpoints: [endpoint]), ProfileConfig(name: "api", endpoints: [endpoint])])
        let target = EndpointTarget(profile: "x", name: "a", address: endpoint.address, socketAddress: [])
        let snapshot = RoutingSnapshot.build(config: config, runtime: RuntimeState(config: config), generation: 7) { _, _ in target }
        XCTAssertEqual(snapshot.listeners.map(\.name), ["front", "tls"])
        let front = try! XCTUnwrap(snapshot.listener(named: "front"))
        guard case .profile(let api, let match?) = front.decide(target: "/api/v1", hostHeader: "x") else { return XCTFail("not routed") }
        XCTAssertTrue(api === snapshot.profiles[1])
        XCTAssertEqual(match.route, 0)
        XCTAssertTrue(snapshot.profile(at: 1, named: "api") === snapshot.profiles[1])
        XCTAssertTrue(snapshot.profile(at: 0, named: "api") === snapshot.profiles[1], "a stale index falls back to the name")
        XCTAssertNil(snapshot.profile(at: 9, named: "gone"))
        let tls = try! XCTUnwrap(snapshot.listener(named: "tls"))
        XCTAssertTrue(tls.needsServerName)
        let name = Array("DB.test".utf8)
        XCTAssertEqual(name.withUnsafeBytes { chosen(tls.decide(serverName: $0)) }, "api")
    }
}
