import CutoverCore
import XCTest

/// `trusted_proxies`: whose X-Forwarded-For is kept, and which client a request speaks for.
final class TrustedProxiesTests: XCTestCase {
    let trusted = TrustedProxies([CIDR("10.0.0.0/8")!, CIDR("2001:db8:1::/48")!, CIDR("192.0.2.1")!])

    func ip(_ text: String) -> [UInt8] { IPAddressText.parse(text)! }

    func client(_ xff: String...) -> String? {
        trusted.client(forwardedFor: HTTPHeaders(xff.map { (name: "X-Forwarded-For", value: $0) }))?.text
    }

    func testContains_matchesIPv4AndIPv6Networks_andHostRoutes() {
        XCTAssertTrue(trusted.contains(ip("10.200.3.4")))
        XCTAssertFalse(trusted.contains(ip("11.0.0.1")))
        XCTAssertTrue(trusted.contains(ip("2001:db8:1:ffff::9")))
        XCTAssertFalse(trusted.contains(ip("2001:db8:2::9")))
        XCTAssertTrue(trusted.contains(ip("192.0.2.1")))
        XCTAssertFalse(trusted.contains(ip("192.0.2.2")), "a bare address is a /32")
        XCTAssertTrue(trusted.contains(ip("::ffff:a01:101")), "IPv4-mapped IPv6 matches the IPv4 network")
        XCTAssertFalse(TrustedProxies().contains(ip("127.0.0.1")), "nothing is trusted by default")
    }

    /// nginx real_ip_recursive: the right-most entry that is not a trusted proxy is the client.
    func testClient_isTheRightMostUntrustedEntry() {
        XCTAssertEqual(client("198.51.100.7, 10.0.0.2, 10.0.0.3"), "198.51.100.7")
        XCTAssertEqual(client("6.6.6.6, 198.51.100.7, 10.0.0.3"), "198.51.100.7", "what the client wrote left of it is not believed")
        XCTAssertEqual(client("6.6.6.6", "198.51.100.7,10.0.0.3"), "198.51.100.7", "repeated fields read as one list")
        XCTAssertEqual(client("10.0.0.1, 10.0.0.2"), "10.0.0.1", "every entry trusted: the left-most")
        XCTAssertEqual(client("2001:db8:9::1, 2001:db8:1::5"), "2001:db8:9:0:0:0:0:1")
        XCTAssertNil(trusted.client(forwardedFor: [("Host", "a")]), "no field: the peer is the client")
    }

    func testClient_acceptsBracketsAndPorts_andStopsAtGarbage() {
        XCTAssertEqual(client("198.51.100.7:4711, 10.0.0.3"), "198.51.100.7")
        XCTAssertEqual(client("[2001:db8:9::1]:443"), "2001:db8:9:0:0:0:0:1")
        XCTAssertEqual(client("198.51.100.7, unknown, 10.0.0.3"), "10.0.0.3", "left of garbage cannot be attributed")
        XCTAssertNil(client("unknown"))
    }
}
