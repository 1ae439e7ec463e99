import CutoverCore
import XCTest

/// `proxy_protocol`, `trusted_proxies` and `send_proxy`: decoded into the model, or refused with the key path.
final class ProxyProtocolConfigTests: XCTestCase {
    func config(listener: String = "", profile: String = "", endpoint: String = "", root: String = "") -> String {
        #"""
        {"listeners": [{"name": "web", "address": "127.0.0.1:8080", "profile": "web"\#(listener)},
                       {"name": "edge", "address": "127.0.0.1:8081", "profile": "web"}],
         "profiles": [{"name": "web", "endpoints": [{"name": "blue", "address": "127.0.0.1:9001"\#(endpoint)},
                                                    {"name": "green", "address": "127.0.0.1:9002"}]\#(profile)}]\#(root)}
        """#
    }

    func error(_ json: String, file: StaticString = #filePath, line: UInt = #line) -> ConfigError? {
        do {
            _ = try ConfigLoader.parse(json, file: "c.json")
            XCTFail("expected a config error", file: file, line: line)
        } catch let error as ConfigError {
            return error
        } catch {
            XCTFail("not a ConfigError: \(error)", file: file, line: line)
        }
        return nil
    }

    func testKeys_decodeIntoTheModel() throws {
        let parsed = try ConfigLoader.parse(
            config(
                listener: #", "proxy_protocol": true, "trusted_proxies": ["192.0.2.0/24"]"#, profile: #", "send_proxy": "v1""#,
                endpoint: #", "send_proxy": "v2""#, root: #", "trusted_proxies": ["10.0.0.0/8", "::1"]"#),
            file: "c.json")
        XCTAssertTrue(parsed.listeners[0].proxyProtocol)
        XCTAssertFalse(parsed.listeners[1].proxyProtocol, "off by default")
        XCTAssertEqual(parsed.trustedProxies(for: parsed.listeners[0]), TrustedProxies([CIDR("192.0.2.0/24")!]), "the listener's own list wins")
        XCTAssertEqual(parsed.trustedProxies(for: parsed.listeners[1]), TrustedProxies([CIDR("10.0.0.0/8")!, CIDR("::1")!]), "else the top-level list")
        let profile = parsed.profiles[0]
        XCTAssertEqual(profile.sendProxy(to: profile.endpoints[0]), .v2, "the endpoint's own send_proxy wins")
        XCTAssertEqual(profile.sendProxy(to: profile.endpoints[1]), .v1)
        let plain = try ConfigLoader.parse(config(), file: "c.json")
        XCTAssertNil(plain.profiles[0].sendProxy(to: plain.profiles[0].endpoints[0]))
        XCTAssertTrue(plain.trustedProxies(for: plain.listeners[0]).isEmpty, "nothing trusted by default")
    }

    func testWrongTypes_areRefusedWithTheKeyPath() {
        let cases: [(String, String, String)] = [
            (config(listener: #", "proxy_protocol": "yes""#), "listeners[0].proxy_protocol", "expected true or false, got a string"),
            (config(listener: #", "proxy_protocol": 1"#), "listeners[0].proxy_protocol", "expected true or false, got a number"),
            (config(listener: #", "trusted_proxies": "10.0.0.0/8""#), "listeners[0].trusted_proxies", "expected an array"),
            (config(root: #", "trusted_proxies": ["10.0.0.0/8", "10.0.0.0/33"]"#), "trusted_proxies[1]", #""10.0.0.0/33" is not an address or network"#),
            (config(listener: #", "trusted_proxies": [8]"#), "listeners[0].trusted_proxies[0]", "expected a string, got a number"),
            (config(profile: #", "send_proxy": "v3""#), "profiles[0].send_proxy", #""v3" is not a PROXY protocol version (use v1 or v2)"#),
            (config(endpoint: #", "send_proxy": true"#), "profiles[0].endpoints[0].send_proxy", "expected a string"),
        ]
        for (json, key, reason) in cases {
            guard let error = error(json) else { continue }
            XCTAssertEqual(error.file, "c.json")
            XCTAssertEqual(error.key, key, "\(error)")
            XCTAssertTrue(error.reason.contains(reason), "\(key): \(error.reason)")
        }
    }

    func testUnknownKeyMessage_listsTheNewKeys() {
        guard let error = error(config(listener: #", "proxy_protocl": true"#)) else { return }
        XCTAssertTrue(error.reason.contains("proxy_protocol"), error.reason)
    }
}
