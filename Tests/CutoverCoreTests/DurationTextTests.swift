import CutoverCore
import XCTest

final class DurationTextTests: XCTestCase {
    func testParsesEveryUnit() {
        XCTAssertEqual(DurationText.parse("500ms"), .milliseconds(500))
        XCTAssertEqual(DurationText.parse("2s"), .seconds(2))
        XCTAssertEqual(DurationText.parse("1.5s"), .milliseconds(1500))
        XCTAssertEqual(DurationText.parse("10m"), .seconds(600))
        XCTAssertEqual(DurationText.parse("1h"), .seconds(3600))
    }

    func testRejectsMalformed() {
        for bad in ["", "s", "10", "-1s", "1x", "ms", "1 s", "abc"] {
            XCTAssertNil(DurationText.parse(bad), bad)
        }
    }

    func testFormatRoundTrips() {
        for text in ["500ms", "2s", "10m", "1h", "1500ms"] {
            XCTAssertEqual(DurationText.format(DurationText.parse(text)!), text)
        }
    }
}

final class CIDRTests: XCTestCase {
    func testIPv4Membership() {
        let net = CIDR("10.1.0.0/16")!
        XCTAssertTrue(net.contains([10, 1, 200, 3]))
        XCTAssertFalse(net.contains([10, 2, 0, 1]))
        XCTAssertTrue(CIDR("0.0.0.0/0")!.contains([8, 8, 8, 8]))
        XCTAssertTrue(CIDR("127.0.0.1")!.contains([127, 0, 0, 1]))
    }

    func testIPv4MappedIPv6MatchesIPv4Rule() {
        let mapped: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 1, 9]
        XCTAssertTrue(CIDR("192.168.1.0/24")!.contains(mapped))
    }

    func testIPv6() {
        XCTAssertTrue(CIDR("::1/128")!.contains(IPAddressText.parse("::1")!))
        XCTAssertTrue(CIDR("fd00::/8")!.contains(IPAddressText.parse("fd12:3::4")!))
        XCTAssertFalse(CIDR("fd00::/8")!.contains(IPAddressText.parse("fe80::1")!))
    }

    func testRejectsMalformed() {
        for bad in ["10.0.0.0/33", "10.0.0/8", "1.2.3.4.5", "::1::2", "abc", "10.0.0.256"] {
            XCTAssertNil(CIDR(bad), bad)
        }
    }
}
