import CutoverCore
import XCTest

/// The TLS keys of listeners and endpoints decode into the model, paths resolve against the config's
/// folder, and each mistake is refused at its key path; SNI picks certificates by their names.
final class TLSConfigTests: XCTestCase {
    private func config(listener: String = "", endpoint: String = "", root: String = "") throws(ConfigError) -> Config {
        let json = """
            {"listeners": [{"name": "web", "address": "127.0.0.1:8443", "profile": "web"\(listener)}],
             "profiles": [{"name": "web", "endpoints": [{"name": "blue", "address": "127.0.0.1:9001"\(endpoint)}]}]\(root)}
            """
        return try ConfigLoader.parse(json, file: "/etc/cutover/c.json")
    }

    private func assertRefused(listener: String = "", endpoint: String = "", root: String = "", key: String, contains reason: String, line: UInt = #line) {
        do throws(ConfigError) {
            _ = try config(listener: listener, endpoint: endpoint, root: root)
            XCTFail("expected an error at \(key)", line: line)
        } catch {
            XCTAssertEqual(error.key, key, "\(error)", line: line)
            XCTAssertTrue(error.reason.contains(reason), "\(error.reason) does not contain \(reason)", line: line)
            XCTAssertEqual(error.file, "/etc/cutover/c.json", line: line)
        }
    }

    func testListenerTLS_decodesCertificatesRelativeToTheConfigFolder() throws {
        let loaded = try config(listener: #", "tls": {"certificates": [{"cert": "site.pem", "key": "/keys/site.key"}, {"cert": "b.pem", "key": "b.key"}], "min_version": "1.3"}"#)
        let tls = try XCTUnwrap(loaded.listeners[0].tls)
        XCTAssertEqual(tls.certificates, [
            CertificateFiles(cert: "/etc/cutover/site.pem", key: "/keys/site.key"),
            CertificateFiles(cert: "/etc/cutover/b.pem", key: "/etc/cutover/b.key"),
        ])
        XCTAssertEqual(tls.minVersion, .v1_3)
    }

    func testListenerTLS_defaultsToTLS12AndNoRedirect() throws {
        let loaded = try config(listener: #", "tls": {"certificates": [{"cert": "a.pem", "key": "a.key"}]}"#)
        XCTAssertEqual(loaded.listeners[0].tls?.minVersion, .v1_2)
        XCTAssertNil(loaded.listeners[0].redirectHTTPSPort)
        XCTAssertEqual(loaded.timeouts.tlsHandshake, .seconds(10))
    }

    func testRedirectHTTPS_trueMeans443_aNumberIsThePort() throws {
        XCTAssertEqual(try config(listener: #", "redirect_https": true"#).listeners[0].redirectHTTPSPort, 443)
        XCTAssertEqual(try config(listener: #", "redirect_https": 8443"#).listeners[0].redirectHTTPSPort, 8443)
        XCTAssertNil(try config(listener: #", "redirect_https": false"#).listeners[0].redirectHTTPSPort)
    }

    func testUpstreamTLS_verifiesByDefault() throws {
        let loaded = try config(endpoint: #", "tls": {"ca": "ca.pem", "server_name": "api.internal"}"#)
        XCTAssertEqual(loaded.profiles[0].endpoints[0].tls, UpstreamTLSConfig(verify: true, ca: "/etc/cutover/ca.pem", serverName: "api.internal"))
        XCTAssertEqual(try config(endpoint: #", "tls": {}"#).profiles[0].endpoints[0].tls, UpstreamTLSConfig())
        XCTAssertEqual(UpstreamTLSConfig().expectedName(endpointHost: "10.0.0.5"), "10.0.0.5")
    }

    func testTLSHandshakeTimeout_decodes() throws {
        XCTAssertEqual(try config(root: #", "timeouts": {"tls_handshake": "3s"}"#).timeouts.tlsHandshake, .seconds(3))
    }

    func testMistakes_areRefusedAtTheirKeyPath() {
        assertRefused(listener: #", "tls": {}"#, key: "listeners[0].tls.certificates", contains: "required key is missing")
        assertRefused(listener: #", "tls": {"certificates": []}"#, key: "listeners[0].tls.certificates", contains: "at least one certificate")
        assertRefused(listener: #", "tls": {"certificates": [{"cert": "a.pem"}]}"#, key: "listeners[0].tls.certificates[0].key", contains: "required key is missing")
        assertRefused(listener: #", "tls": {"certificates": [{"cert": "", "key": "a.key"}]}"#, key: "listeners[0].tls.certificates[0].cert", contains: "must not be empty")
        assertRefused(listener: #", "tls": {"certificates": [{"cert": "a.pem", "key": "a.key", "chain": "x"}]}"#, key: "listeners[0].tls.certificates[0].chain", contains: "expected one of: cert, key")
        assertRefused(listener: #", "tls": {"certificates": [{"cert": "a.pem", "key": "a.key"}], "min_version": "1.1"}"#, key: "listeners[0].tls.min_version", contains: "use 1.2 or 1.3")
        assertRefused(listener: #", "redirect_https": "yes""#, key: "listeners[0].redirect_https", contains: "expected true")
        assertRefused(listener: #", "redirect_https": 0"#, key: "listeners[0].redirect_https", contains: "not a port")
        assertRefused(listener: #", "mode": "tcp", "redirect_https": true"#, key: "listeners[0].redirect_https", contains: "only an http listener")
        assertRefused(listener: #", "redirect_https": true, "tls": {"certificates": [{"cert": "a.pem", "key": "a.key"}]}"#, key: "listeners[0].redirect_https", contains: "already speaks TLS")
        assertRefused(endpoint: #", "tls": {"verify": "yes"}"#, key: "profiles[0].endpoints[0].tls.verify", contains: "expected true or false")
        assertRefused(endpoint: #", "tls": {"server_name": ""}"#, key: "profiles[0].endpoints[0].tls.server_name", contains: "not a host name")
        assertRefused(endpoint: #", "tls": {"ca": ""}"#, key: "profiles[0].endpoints[0].tls.ca", contains: "must not be empty")
        assertRefused(root: #", "timeouts": {"tls_handshake": "0s"}"#, key: "timeouts.tls_handshake", contains: "greater than 0")
    }

    // MARK: - SNI

    func testWildcard_matchesExactlyOneLeftmostLabel() {
        XCTAssertTrue(CertificateSelection.matches(pattern: "*.example.com", host: "a.example.com"))
        XCTAssertTrue(CertificateSelection.matches(pattern: "*.Example.com", host: "A.example.com."))
        XCTAssertFalse(CertificateSelection.matches(pattern: "*.example.com", host: "example.com"))
        XCTAssertFalse(CertificateSelection.matches(pattern: "*.example.com", host: "a.b.example.com"))
        XCTAssertFalse(CertificateSelection.matches(pattern: "*.com", host: "example.com"))
        XCTAssertFalse(CertificateSelection.matches(pattern: "a*.example.com", host: "ab.example.com"))
        XCTAssertTrue(CertificateSelection.matches(pattern: "www.example.com", host: "www.example.com"))
    }

    func testSelection_exactBeatsWildcard_firstIsTheDefault() {
        let selection = CertificateSelection(names: [["default.test"], ["*.example.com"], ["api.example.com", "API2.example.com"]])
        XCTAssertEqual(selection.index(for: nil), 0)
        XCTAssertEqual(selection.index(for: ""), 0)
        XCTAssertEqual(selection.index(for: "unknown.test"), 0)
        XCTAssertEqual(selection.index(for: "www.example.com"), 1)
        XCTAssertEqual(selection.index(for: "api.example.com"), 2)
        XCTAssertEqual(selection.index(for: "api2.example.com"), 2)
        XCTAssertEqual(selection.index(for: "default.test"), 0)
    }
}

/// The `Location` of `redirect_https`: same host and path, the HTTPS port, 443 left out.
final class HTTPSRedirectTests: XCTestCase {
    func testLocation_keepsHostAndPath_replacesThePort() {
        XCTAssertEqual(HTTPSRedirect.location(host: "shop.test:8080", target: "/cart?item=3", port: 8443), "https://shop.test:8443/cart?item=3")
        XCTAssertEqual(HTTPSRedirect.location(host: "shop.test", target: "/", port: 443), "https://shop.test/")
        XCTAssertEqual(HTTPSRedirect.location(host: "[::1]:8080", target: "/a", port: 443), "https://[::1]/a")
        XCTAssertEqual(HTTPSRedirect.location(host: " shop.test ", target: "http://shop.test:8080/x?y", port: 443), "https://shop.test/x?y")
        XCTAssertEqual(HTTPSRedirect.location(host: "shop.test", target: "*", port: 443), "https://shop.test/")
        XCTAssertEqual(HTTPSRedirect.location(host: nil, target: "/p", port: 443), "https://localhost/p")
    }
}
