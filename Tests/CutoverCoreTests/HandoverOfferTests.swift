import CutoverCore
import XCTest

/// Which offered socket each listener of the new config takes over in a `--takeover`.
final class HandoverOfferTests: XCTestCase {
    func testListenerMatches_byNameModeAndAddress_portZeroTakesTheOldPort() {
        let offer = HandoverOffer(pid: 1, version: "v", sockets: [
            .init(kind: "listener", name: "web", host: "127.0.0.1", port: 8080, mode: "http"),
            .init(kind: "listener", name: "db", host: "127.0.0.1", port: 5433, mode: "tcp"),
            .init(kind: "admin_http", name: "admin_http", host: "127.0.0.1", port: 9000, mode: nil),
        ])
        func listener(_ name: String, _ port: UInt16, _ mode: ListenerMode) -> ListenerConfig {
            ListenerConfig(name: name, address: HostPort(host: "127.0.0.1", port: port), mode: mode, profile: "p")
        }
        let config = Config(
            listeners: [listener("db", 5433, .tcp), listener("web", 0, .http), listener("api", 8081, .http), listener("web2", 8080, .tcp)],
            profiles: [ProfileConfig(name: "p", endpoints: [EndpointConfig(name: "e", address: HostPort(host: "127.0.0.1", port: 1))])])
        XCTAssertEqual(offer.listenerMatches(config), [0: 1, 1: 0], "a new listener and a changed mode open their own sockets")
        XCTAssertEqual(offer.adminHTTPMatch(HostPort(host: "127.0.0.1", port: 9000)), 2)
        XCTAssertEqual(offer.adminHTTPMatch(HostPort(host: "127.0.0.1", port: 0)), 2)
        XCTAssertNil(offer.adminHTTPMatch(HostPort(host: "127.0.0.1", port: 9001)))
        XCTAssertNil(offer.adminHTTPMatch(nil))
    }
}
