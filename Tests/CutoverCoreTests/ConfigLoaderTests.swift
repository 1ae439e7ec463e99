import CutoverCore
import Foundation
import XCTest

/// Decoding every key into the model, and refusing each kind of mistake with its exact key path.
final class ConfigLoaderTests: XCTestCase {
    private var tempDirectory = ""

    override func setUpWithError() throws {
        tempDirectory = NSTemporaryDirectory() + "cutover-config-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: tempDirectory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: tempDirectory)
    }

    // MARK: - Valid configs

    func testFullConfig_decodesEveryKey() throws {
        let json = """
            {
              "listeners": [
                { "name": "web", "address": "0.0.0.0:8080", "mode": "http", "profile": "web" },
                { "name": "pg", "address": "[::1]:6432", "mode": "tcp", "profile": "db" }
              ],
              "profiles": [
                {
                  "name": "web",
                  "routing": "priority",
                  "endpoints": [
                    { "name": "blue", "address": "10.0.0.1:8000", "priority": 0, "weight": 95, "state": "online" },
                    { "name": "green", "address": "10.0.0.2:8000", "priority": 2, "weight": 5, "state": "offline",
                      "probe": { "type": "tcp", "interval": "5s", "timeout": "5s", "rise": 1, "fall": 1 } }
                  ],
                  "probe": {
                    "type": "http", "method": "HEAD", "path": "/healthz?deep=1", "host": "app.internal",
                    "headers": { "User-Agent": "cutover", "X-Probe": "1" },
                    "expect_status": ["200-299", "301", 418], "body_contains": "ok", "port": 8001,
                    "interval": "1500ms", "timeout": "1s", "rise": 3, "fall": 4
                  },
                  "passive": { "failures": 0, "status_5xx": 7 },
                  "drain_timeout": "2m", "hold_timeout": "15s", "max_held": 42,
                  "hold_when_unavailable": true, "fail_open": true, "unknown_is_up": false,
                  "maintenance": {
                    "page_file": "maintenance.html",
                    "retry_after": "1h",
                    "bypass": { "sources": ["10.0.0.0/8", "::1"], "header": { "name": "X-Bypass", "value": "s3cret" } }
                  }
                },
                {
                  "name": "db",
                  "endpoints": [{ "name": "primary", "address": "127.0.0.1:5432" }],
                  "probe": { "type": "command", "command": ["/bin/true", "-x"] },
                  "maintenance": { "page": "<p>later</p>" }
                }
              ],
              "admin": { "socket": "/run/c.sock", "socket_mode": "0660", "socket_group": "ops", "http": "10.1.1.1:9900", "token": "t0k" },
              "state_file": "/var/lib/cutover/state.json",
              "databases": [{ "name": "main", "driver": "postgres", "dsn": "host=h dbname=app" }],
              "timeouts": { "connect": "1s", "header_read": "2s", "idle": "3s", "upstream_response": "4s", "write": "5s", "shutdown": "0s" },
              "limits": { "max_connections": 10, "max_header_bytes": 20, "max_header_count": 30, "max_request_line_bytes": 40,
                          "max_body_bytes": 50, "max_idle_upstream_per_endpoint": 0 },
              "access_log": "off",
              "workers": 3
            }
            """
        let config = try ConfigLoader.parse(
            json, file: tempDirectory + "/cutover.json",
            pageFiles: [tempDirectory + "/maintenance.html": .read(Array("<h1>down for upgrade</h1>\n".utf8))])

        let webProbe = ProbeConfig(
            type: .http, method: "HEAD", path: "/healthz?deep=1", host: "app.internal",
            headers: [HTTPHeaderField(name: "User-Agent", value: "cutover"), HTTPHeaderField(name: "X-Probe", value: "1")],
            expectStatus: [200...299, 301...301, 418...418], bodyContains: "ok", port: 8001,
            interval: .milliseconds(1500), timeout: .seconds(1), rise: 3, fall: 4)
        let greenProbe = ProbeConfig(type: .tcp, interval: .seconds(5), timeout: .seconds(5), rise: 1, fall: 1)
        let web = ProfileConfig(
            name: "web", routing: .priority,
            endpoints: [
                EndpointConfig(name: "blue", address: HostPort(host: "10.0.0.1", port: 8000), priority: 0, weight: 95, state: .online),
                EndpointConfig(
                    name: "green", address: HostPort(host: "10.0.0.2", port: 8000), priority: 2, weight: 5, state: .offline, probe: greenProbe),
            ],
            probe: webProbe, passive: PassiveHealthConfig(failures: 0, status5xx: 7), drainTimeout: .seconds(120),
            holdTimeout: .seconds(15), maxHeld: 42, holdWhenUnavailable: true, failOpen: true, unknownIsUp: false,
            gate: GateConfig(
                maintenancePage: "<h1>down for upgrade</h1>\n", maintenancePageFile: tempDirectory + "/maintenance.html",
                retryAfter: .seconds(3600),
                bypass: MaintenanceBypass(sources: [CIDR("10.0.0.0/8")!, CIDR("::1")!], header: HTTPHeaderField(name: "X-Bypass", value: "s3cret"))))
        let db = ProfileConfig(
            name: "db", endpoints: [EndpointConfig(name: "primary", address: HostPort(host: "127.0.0.1", port: 5432))],
            probe: ProbeConfig(type: .command, command: ["/bin/true", "-x"]), gate: GateConfig(maintenancePage: "<p>later</p>"))
        let expected = Config(
            listeners: [
                ListenerConfig(name: "web", address: HostPort(host: "0.0.0.0", port: 8080), mode: .http, profile: "web"),
                ListenerConfig(name: "pg", address: HostPort(host: "::1", port: 6432), mode: .tcp, profile: "db"),
            ],
            profiles: [web, db],
            admin: AdminConfig(socket: "/run/c.sock", socketMode: 0o660, socketGroup: "ops", http: HostPort(host: "10.1.1.1", port: 9900), token: "t0k"),
            stateFile: "/var/lib/cutover/state.json",
            databases: [DatabaseConfig(name: "main", driver: "postgres", dsn: "host=h dbname=app")],
            timeouts: Timeouts(connect: .seconds(1), headerRead: .seconds(2), idle: .seconds(3), upstreamResponse: .seconds(4), write: .seconds(5), shutdown: .zero),
            limits: Limits(maxConnections: 10, maxHeaderBytes: 20, maxHeaderCount: 30, maxRequestLineBytes: 40, maxBodyBytes: 50, maxIdleUpstreamPerEndpoint: 0),
            accessLog: "off", workers: 3)

        // Section by section first, so a mismatch points at its part; then the whole.
        XCTAssertEqual(config.listeners, expected.listeners)
        XCTAssertEqual(config.profiles[0].endpoints, expected.profiles[0].endpoints)
        XCTAssertEqual(config.profiles[0].probe, expected.profiles[0].probe)
        XCTAssertEqual(config.profiles[0].gate, expected.profiles[0].gate)
        XCTAssertEqual(config.profiles, expected.profiles)
        XCTAssertEqual(config.admin, expected.admin)
        XCTAssertEqual(config, expected)
    }

    func testMinimalConfig_getsModelDefaults() throws {
        let config = try ConfigLoader.parse(minimal(), file: "min.json")
        let expected = Config(
            listeners: [ListenerConfig(name: "web", address: HostPort(host: "127.0.0.1", port: 8080), mode: .http, profile: "web")],
            profiles: [ProfileConfig(name: "web", endpoints: [EndpointConfig(name: "blue", address: HostPort(host: "127.0.0.1", port: 9001))])])
        XCTAssertEqual(config, expected)
    }

    func testNull_meansNotSet() throws {
        let config = try ConfigLoader.parse(minimal(root: #", "state_file": null, "workers": null"#), file: "c.json")
        XCTAssertNil(config.stateFile)
        XCTAssertEqual(config.workers, 0)
    }

    func testDesignExample_parses() throws {
        let json = """
            {
              "listeners": [{ "name": "web", "address": "127.0.0.1:8080", "mode": "http", "profile": "web" }],
              "profiles": [{
                "name": "web",
                "routing": "priority",
                "endpoints": [
                  { "name": "blue",  "address": "127.0.0.1:9001", "priority": 1, "weight": 1, "state": "online" },
                  { "name": "green", "address": "127.0.0.1:9002", "priority": 1, "weight": 1, "state": "offline" }
                ],
                "probe": { "type": "http", "path": "/healthz", "interval": "2s", "timeout": "1s", "rise": 2, "fall": 3 },
                "drain_timeout": "30s",
                "hold_timeout": "30s",
                "max_held": 10000
              }],
              "admin": { "socket": "/run/cutover/admin.sock", "http": "127.0.0.1:9900" },
              "state_file": "/var/lib/cutover/state.json",
              "databases": [{ "name": "primary", "driver": "postgres", "dsn": "host=127.0.0.1 port=5432 dbname=app user=cutover" }]
            }
            """
        let config = try ConfigLoader.parse(json, file: "design.json")
        XCTAssertEqual(config.profiles[0].endpoints.map(\.state), [.online, .offline])
        XCTAssertEqual(config.profiles[0].probe?.path, "/healthz")
        XCTAssertEqual(config.admin.http, HostPort(host: "127.0.0.1", port: 9900))
        XCTAssertEqual(config.databases.first?.dsn, "host=127.0.0.1 port=5432 dbname=app user=cutover")
    }

    func testListenerPortZero_isAllowed() throws {
        let config = try ConfigLoader.parse(minimal(listeners: #"[{"name":"web","address":"127.0.0.1:0","profile":"web"},{"name":"w2","address":"127.0.0.1:0","profile":"web"}]"#), file: "c.json")
        XCTAssertEqual(config.listeners.map(\.address.port), [0, 0])
    }

    func testLoopbackAdminHTTP_needsNoToken() throws {
        for host in ["127.0.0.1:9900", "[::1]:9900", "localhost:9900"] {
            XCTAssertNoThrow(try ConfigLoader.parse(minimal(root: #", "admin": {"http": "\#(host)"}"#), file: "c.json"), host)
        }
    }

    // MARK: - Whole-file problems

    func testInvalidJSON_reportsLineAndColumn() {
        let json = "{\n  \"listeners\": [],\n  \"profiles\" []\n}"
        assertError(try ConfigLoader.parse(json, file: "c.json"), key: "", contains: "invalid JSON at line 3, column 14")
    }

    func testTrailingComma_isRejected() {
        assertError(try ConfigLoader.parse(#"{"listeners": [], }"#, file: "c.json"), key: "", contains: "expected a quoted key")
    }

    func testDuplicateJSONKey_isRejected() {
        assertError(try ConfigLoader.parse(#"{"workers": 1, "workers": 2}"#, file: "c.json"), key: "", contains: "duplicate key \"workers\"")
    }

    func testTopLevelArray_isRejected() {
        assertError(try ConfigLoader.parse("[]", file: "c.json"), key: "", contains: "expected a JSON object at the top level, got an array")
    }

    func testErrorDescription_isFileKeyReason() {
        XCTAssertEqual(ConfigError(file: "c.json", key: "admin.http", reason: "bad").description, "c.json: admin.http: bad")
        XCTAssertEqual(ConfigError(file: "c.json", key: "", reason: "bad").description, "c.json: bad")
    }

    // MARK: - Required keys, unknown keys, JSON types

    func testMissingListeners_isRejected() {
        assertError(parse(#"{"profiles": []}"#), key: "listeners", contains: "required key is missing")
        assertError(parse(minimal(listeners: "[]")), key: "listeners", contains: "at least one listener")
        // An agent's config needs neither (issue 17, defect 5); what it has is still checked.
        let agentOnly = #"{"databases": [{"name": "primary", "driver": "postgres", "dsn": "dbname=app"}]}"#
        XCTAssertEqual(try ConfigLoader.decode(Array(agentOnly.utf8), file: "a.json", use: .agent).completed(pageFiles: [:]).databases.map(\.name), ["primary"])
        assertError(try ConfigLoader.decode(Array(#"{"databases": [{"name": "p"}]}"#.utf8), file: "c.json", use: .agent).completed(pageFiles: [:]),
                    key: "databases[0].dsn", contains: "required key is missing")
    }

    func testMissingProfiles_isRejected() {
        assertError(parse(#"{"listeners": [{"name":"web","address":"127.0.0.1:1","profile":"web"}]}"#), key: "profiles", contains: "required key is missing")
        assertError(
            parse(#"{"listeners": [{"name":"web","address":"127.0.0.1:1","profile":"web"}], "profiles": []}"#), key: "profiles",
            contains: "at least one profile")
    }

    func testMissingRequiredKeys_nameTheirPath() {
        assertError(parse(minimal(listeners: #"[{"name":"web","address":"127.0.0.1:8080"}]"#)), key: "listeners[0].profile", contains: "required key is missing")
        assertError(parse(minimal(endpoints: #"[{"name":"blue"}]"#)), key: "profiles[0].endpoints[0].address", contains: "required key is missing")
        assertError(parse(minimal(endpoints: "[]")), key: "profiles[0].endpoints", contains: "at least one endpoint")
        assertError(parse(minimal(root: #", "databases": [{"name":"main"}]"#)), key: "databases[0].dsn", contains: "required key is missing")
    }

    func testUnknownKey_listsExpectedKeys() {
        assertError(
            parse(minimal(endpoints: #"[{"name":"blue","address":"127.0.0.1:9001","wieght":3}]"#)), key: "profiles[0].endpoints[0].wieght",
            contains: "unknown key; expected one of: name, address, priority, weight, state, probe")
        assertError(parse(minimal(root: #", "listner": 1"#)), key: "listner", contains: "unknown key; expected one of: listeners, profiles,")
        assertError(parse(minimal(profile: #", "probe": {"intervall": "2s"}"#)), key: "profiles[0].probe.intervall", contains: "unknown key")
        assertError(parse(minimal(root: #", "admin": {"sock": "/x"}"#)), key: "admin.sock", contains: "unknown key")
        assertError(parse(minimal(root: #", "timeouts": {"read": "1s"}"#)), key: "timeouts.read", contains: "unknown key")
        assertError(
            parse(minimal(profile: #", "maintenance": {"bypass": {"header": {"name": "X", "value": "v", "secret": 1}}}"#)),
            key: "profiles[0].maintenance.bypass.header.secret", contains: "unknown key; expected one of: name, value")
    }

    func testWrongJSONType_namesBothTypes() {
        assertError(parse(minimal(listeners: #"[{"name":5,"address":"127.0.0.1:8080","profile":"web"}]"#)), key: "listeners[0].name", contains: "expected a string, got a number")
        assertError(parse(minimal(endpoints: #"[{"name":"b","address":"127.0.0.1:9001","weight":true}]"#)), key: "profiles[0].endpoints[0].weight", contains: "expected an integer, got a boolean")
        assertError(parse(minimal(endpoints: #"[{"name":"b","address":"127.0.0.1:9001","weight":1.5}]"#)), key: "profiles[0].endpoints[0].weight", contains: "expected an integer, got 1.5")
        assertError(parse(minimal(profile: #", "fail_open": 1"#)), key: "profiles[0].fail_open", contains: "expected true or false, got a number")
        assertError(parse(minimal(profile: #", "fail_open": "yes""#)), key: "profiles[0].fail_open", contains: "expected true or false, got a string")
        assertError(parse(minimal(root: #", "profiles": {}"#, replacingProfiles: true)), key: "profiles", contains: "expected an array, got an object")
        assertError(parse(minimal(root: #", "limits": []"#)), key: "limits", contains: "expected an object, got an array")
        assertError(parse(minimal(profile: #", "drain_timeout": 30"#)), key: "profiles[0].drain_timeout", contains: "expected a duration string such as \"2s\", got a number")
    }

    // MARK: - Names and uniqueness

    func testDuplicateListenerName_isRejected() {
        let listeners = #"[{"name":"web","address":"127.0.0.1:8080","profile":"web"},{"name":"web","address":"127.0.0.1:8081","profile":"web"}]"#
        assertError(parse(minimal(listeners: listeners)), key: "listeners[1].name", contains: "duplicate listener name \"web\" (also listeners[0])")
    }

    func testTwoListenersOnOneAddress_isRejected() {
        let listeners = #"[{"name":"a","address":"127.0.0.1:8080","profile":"web"},{"name":"b","address":"127.0.0.1:8080","profile":"web"}]"#
        assertError(parse(minimal(listeners: listeners)), key: "listeners[1].address", contains: "127.0.0.1:8080 is already used by listener \"a\"")
        let wildcard = #"[{"name":"a","address":"127.0.0.1:8080","profile":"web"},{"name":"b","address":"0.0.0.0:8080","profile":"web"}]"#
        assertError(parse(minimal(listeners: wildcard)), key: "listeners[1].address", contains: "already used by listener \"a\"")
    }

    func testDuplicateProfileName_isRejected() {
        let json = #"""
            {"listeners": [{"name":"web","address":"127.0.0.1:8080","profile":"web"}],
             "profiles": [{"name":"web","endpoints":[{"name":"a","address":"127.0.0.1:1"}]},
                          {"name":"web","endpoints":[{"name":"a","address":"127.0.0.1:2"}]}]}
            """#
        assertError(parse(json), key: "profiles[1].name", contains: "duplicate profile name \"web\"")
    }

    func testDuplicateEndpointName_isRejected() {
        let endpoints = #"[{"name":"blue","address":"127.0.0.1:9001"},{"name":"blue","address":"127.0.0.1:9002"}]"#
        assertError(parse(minimal(endpoints: endpoints)), key: "profiles[0].endpoints[1].name", contains: "duplicate endpoint name \"blue\" in profile \"web\"")
    }

    func testDuplicateDatabaseName_isRejected() {
        let databases = #", "databases": [{"name":"db","dsn":"a"},{"name":"db","dsn":"b"}]"#
        assertError(parse(minimal(root: databases)), key: "databases[1].name", contains: "duplicate database name \"db\"")
    }

    func testListenerProfile_mustExist() {
        let json = #"""
            {"listeners": [{"name":"web","address":"127.0.0.1:8080","profile":"wbe"}],
             "profiles": [{"name":"web","endpoints":[{"name":"a","address":"127.0.0.1:1"}]},
                          {"name":"api","endpoints":[{"name":"a","address":"127.0.0.1:2"}]}]}
            """#
        let error = captureError(parse(json))
        XCTAssertEqual(error?.description, #"c.json: listeners[0].profile: no profile named "wbe" (profiles: web, api)"#)
    }

    func testNames_allowOnlyPlainCharacters() {
        assertError(parse(minimal(endpoints: #"[{"name":"blue green","address":"127.0.0.1:9001"}]"#)), key: "profiles[0].endpoints[0].name", contains: "may only contain letters, digits")
        assertError(parse(minimal(listeners: #"[{"name":"","address":"127.0.0.1:8080","profile":"web"}]"#)), key: "listeners[0].name", contains: "must not be empty")
        assertError(parse(minimal(root: #", "databases": [{"name":"db/1","dsn":"x"}]"#)), key: "databases[0].name", contains: "may only contain")
        XCTAssertNoThrow(try ConfigLoader.parse(minimal(endpoints: #"[{"name":"v2.1_blue-a","address":"127.0.0.1:9001"}]"#), file: "c.json"))
    }

    // MARK: - Values

    func testDuration_mustParse() {
        assertError(parse(minimal(profile: #", "probe": {"interval": "2x"}"#)), key: "profiles[0].probe.interval", contains: #""2x" is not a duration (use 500ms, 2s, 10m)"#)
        assertError(parse(minimal(root: #", "timeouts": {"idle": "soon"}"#)), key: "timeouts.idle", contains: "is not a duration")
    }

    func testAddressWithoutPort_isRejected() {
        let error = captureError(parse(minimal(endpoints: #"[{"name":"a","address":"127.0.0.1:9001"},{"name":"b","address":"10.0.0.5"}]"#)))
        XCTAssertEqual(error?.description, #"c.json: profiles[0].endpoints[1].address: "10.0.0.5" has no port"#)
        assertError(parse(minimal(root: #", "admin": {"http": ":9900"}"#)), key: "admin.http", contains: "has no host")
        assertError(parse(minimal(listeners: #"[{"name":"w","address":"127.0.0.1:99999","profile":"web"}]"#)), key: "listeners[0].address", contains: "has an invalid port")
    }

    func testEndpointPortZero_isRejected() {
        assertError(parse(minimal(endpoints: #"[{"name":"a","address":"127.0.0.1:0"}]"#)), key: "profiles[0].endpoints[0].address", contains: "only listeners may use port 0")
    }

    func testAdminHTTPOffLoopback_requiresToken() {
        assertError(parse(minimal(root: #", "admin": {"http": "0.0.0.0:9900"}"#)), key: "admin.http", contains: "admin.token is required")
        XCTAssertNoThrow(try ConfigLoader.parse(minimal(root: #", "admin": {"http": "0.0.0.0:9900", "token": "x"}"#), file: "c.json"))
    }

    func testListenerMode_mustBeKnown() {
        assertError(parse(minimal(listeners: #"[{"name":"w","address":"127.0.0.1:1","mode":"udp","profile":"web"}]"#)), key: "listeners[0].mode", contains: #""udp" is not a listener mode (use http or tcp)"#)
        assertError(parse(minimal(profile: #", "routing": "random""#)), key: "profiles[0].routing", contains: "is not a routing method (use priority)")
    }

    func testEndpointState_drainingIsRuntimeOnly() {
        assertError(parse(minimal(endpoints: #"[{"name":"a","address":"127.0.0.1:1","state":"draining"}]"#)), key: "profiles[0].endpoints[0].state", contains: "runtime state")
        assertError(parse(minimal(endpoints: #"[{"name":"a","address":"127.0.0.1:1","state":"up"}]"#)), key: "profiles[0].endpoints[0].state", contains: "use online or offline")
    }

    func testEndpointPriorityAndWeight_ranges() {
        assertError(parse(minimal(endpoints: #"[{"name":"a","address":"127.0.0.1:1","priority":-1}]"#)), key: "profiles[0].endpoints[0].priority", contains: "must be 0 or more")
        assertError(parse(minimal(endpoints: #"[{"name":"a","address":"127.0.0.1:1","weight":1001}]"#)), key: "profiles[0].endpoints[0].weight", contains: "must be 0-1000")
        XCTAssertNoThrow(try ConfigLoader.parse(minimal(endpoints: #"[{"name":"a","address":"127.0.0.1:1","weight":0}]"#), file: "c.json"))
    }

    func testProbeRules() {
        assertError(parse(minimal(profile: #", "probe": {"path": "healthz"}"#)), key: "profiles[0].probe.path", contains: "must start with \"/\"")
        let nine = (1...9).map { "\"X-H\($0)\": \"v\"" }.joined(separator: ", ")
        assertError(parse(minimal(profile: #", "probe": {"headers": {\#(nine)}}"#)), key: "profiles[0].probe.headers", contains: "at most 8 headers, got 9")
        assertError(parse(minimal(profile: #", "probe": {"headers": {"X-A": 1}}"#)), key: "profiles[0].probe.headers.X-A", contains: "expected a string")
        assertError(parse(minimal(profile: #", "probe": {"headers": {"Bad Name": "v"}}"#)), key: "profiles[0].probe.headers.Bad Name", contains: "is not a header name")
        assertError(parse(minimal(profile: #", "probe": {"expect_status": ["200-299", 600]}"#)), key: "profiles[0].probe.expect_status[1]", contains: "600 is outside 100-599")
        assertError(parse(minimal(profile: #", "probe": {"expect_status": ["2xx"]}"#)), key: "profiles[0].probe.expect_status[0]", contains: "is not a status code or range")
        assertError(parse(minimal(profile: #", "probe": {"expect_status": ["299-200"]}"#)), key: "profiles[0].probe.expect_status[0]", contains: "empty range")
        assertError(parse(minimal(profile: #", "probe": {"expect_status": []}"#)), key: "profiles[0].probe.expect_status", contains: "at least one")
        assertError(parse(minimal(profile: #", "probe": {"type": "command"}"#)), key: "profiles[0].probe.command", contains: "required when type is \"command\"")
        assertError(parse(minimal(profile: #", "probe": {"type": "command", "command": [1]}"#)), key: "profiles[0].probe.command[0]", contains: "expected a string")
        assertError(parse(minimal(profile: #", "probe": {"type": "icmp"}"#)), key: "profiles[0].probe.type", contains: "use http, tcp, command or agent")
        assertError(parse(minimal(profile: #", "probe": {"interval": "1s", "timeout": "2s"}"#)), key: "profiles[0].probe.timeout", contains: "2s is longer than interval 1s")
        assertError(parse(minimal(profile: #", "probe": {"interval": "0s"}"#)), key: "profiles[0].probe.interval", contains: "greater than 0")
        assertError(parse(minimal(profile: #", "probe": {"rise": 0}"#)), key: "profiles[0].probe.rise", contains: "must be 1 or more")
        assertError(parse(minimal(profile: #", "probe": {"fall": 0}"#)), key: "profiles[0].probe.fall", contains: "must be 1 or more")
        assertError(parse(minimal(profile: #", "probe": {"port": 70000}"#)), key: "profiles[0].probe.port", contains: "is not a port")
        assertError(parse(minimal(profile: #", "probe": {"method": "GE T"}"#)), key: "profiles[0].probe.method", contains: "is not an HTTP method")
        assertError(
            parse(minimal(endpoints: #"[{"name":"a","address":"127.0.0.1:1","probe":{"path":"x"}}]"#)), key: "profiles[0].endpoints[0].probe.path",
            contains: "must start with")
    }

    func testProfileCounters_mustNotBeNegative() {
        assertError(parse(minimal(profile: #", "passive": {"failures": -1}"#)), key: "profiles[0].passive.failures", contains: "must be 0")
        assertError(parse(minimal(profile: #", "passive": {"status_5xx": -1}"#)), key: "profiles[0].passive.status_5xx", contains: "must be 0")
        assertError(parse(minimal(profile: #", "max_held": -5"#)), key: "profiles[0].max_held", contains: "must be 0 or more")
    }

    /// The core reads no file: the draft names the page files (resolved against the config's
    /// directory) and takes their bytes back.
    func testMaintenance_pageFileIsResolvedRelativeToTheConfigAndGivenAsBytes() throws {
        let draft = try ConfigLoader.decode(Array(minimal(profile: #", "maintenance": {"page_file": "page.html"}"#).utf8), file: "/etc/cutover/c.json")
        XCTAssertEqual(draft.pageFiles, ["/etc/cutover/page.html"])
        let config = try draft.completed(pageFiles: ["/etc/cutover/page.html": .read(Array("<p>soon</p>".utf8))])
        XCTAssertEqual(config.profiles[0].gate.maintenancePage, "<p>soon</p>")
        XCTAssertEqual(config.profiles[0].gate.maintenancePageFile, "/etc/cutover/page.html")
        XCTAssertEqual(try ConfigLoader.decode(Array(minimal().utf8), file: "c.json").pageFiles, [])
    }

    func testMaintenance_errors() {
        let pageConfig = minimal(profile: #", "maintenance": {"page_file": "/srv/page.html"}"#)
        assertError(
            { try ConfigLoader.parse(pageConfig, file: "c.json", pageFiles: ["/srv/page.html": .unreadable(reason: "No such file or directory")]) },
            key: "profiles[0].maintenance.page_file", contains: "cannot read /srv/page.html: No such file or directory")
        assertError(
            { try ConfigLoader.parse(pageConfig, file: "c.json", pageFiles: ["/srv/page.html": .read([0xFF, 0xFE])]) },
            key: "profiles[0].maintenance.page_file", contains: "/srv/page.html is not UTF-8 text")
        assertError(parse(pageConfig), key: "profiles[0].maintenance.page_file", contains: "cannot read /srv/page.html: the loader did not read it")
        assertError(parse(minimal(profile: #", "maintenance": {"page": "x", "page_file": "y"}"#)), key: "profiles[0].maintenance.page_file", contains: "not both")
        assertError(parse(minimal(profile: #", "maintenance": {"retry_after": "later"}"#)), key: "profiles[0].maintenance.retry_after", contains: "is not a duration")
        assertError(
            parse(minimal(profile: #", "maintenance": {"bypass": {"sources": ["10.0.0.0/8", "10.0.0.0/33"]}}"#)),
            key: "profiles[0].maintenance.bypass.sources[1]", contains: #""10.0.0.0/33" is not an address or network"#)
        assertError(parse(minimal(profile: #", "maintenance": {"bypass": {"header": {"name": "X-B"}}}"#)), key: "profiles[0].maintenance.bypass.header.value", contains: "required key is missing")
        assertError(parse(minimal(profile: #", "maintenance": {"bypass": {"header": {"name": "X-B", "value": ""}}}"#)), key: "profiles[0].maintenance.bypass.header.value", contains: "must not be empty")
    }

    func testAdminSocketMode_isAnOctalString() throws {
        assertError(parse(minimal(root: #", "admin": {"socket_mode": 660}"#)), key: "admin.socket_mode", contains: "expected an octal string such as \"0660\", got a number")
        assertError(parse(minimal(root: #", "admin": {"socket_mode": "0999"}"#)), key: "admin.socket_mode", contains: "is not an octal mode")
        assertError(parse(minimal(root: #", "admin": {"socket_mode": "1777"}"#)), key: "admin.socket_mode", contains: "bits beyond 0777")
        XCTAssertEqual(try ConfigLoader.parse(minimal(root: #", "admin": {"socket_mode": "640"}"#), file: "c.json").admin.socketMode, 0o640)
    }

    func testAdminHTTP_mustNotCollideWithAListener() {
        assertError(parse(minimal(root: #", "admin": {"http": "127.0.0.1:8080"}"#)), key: "admin.http", contains: "already used by listener \"web\"")
    }

    func testDatabaseDriver_mustBePostgres() {
        assertError(parse(minimal(root: #", "databases": [{"name":"db","driver":"mysql","dsn":"x"}]"#)), key: "databases[0].driver", contains: #""mysql" is not a database driver (use postgres)"#)
    }

    func testRootScalars() {
        assertError(parse(minimal(root: #", "workers": -1"#)), key: "workers", contains: "must be 0 (one per CPU) or more")
        assertError(parse(minimal(root: #", "access_log": """#)), key: "access_log", contains: "\"stderr\", \"off\" or a file path")
        assertError(parse(minimal(root: #", "access_log_format": "xml""#)), key: "access_log_format", contains: "\"xml\" is not a format for the access log (use text or json)")
        XCTAssertEqual(try ConfigLoader.parse(minimal(root: #", "access_log_format": "json""#), file: "c.json").accessLogFormat, .json)
        assertError(parse(minimal(root: #", "worker_cpu_affinity": "on""#)), key: "worker_cpu_affinity", contains: "\"on\" is not a worker CPU affinity (use auto or off)")
        XCTAssertEqual(try ConfigLoader.parse(minimal(root: #", "worker_cpu_affinity": "off""#), file: "c.json").workerCPUAffinity, .off)
        XCTAssertEqual(try ConfigLoader.parse(minimal(), file: "c.json").workerCPUAffinity, .auto, "the default")
        assertError(parse(minimal(root: #", "limits": {"max_connections": 0}"#)), key: "limits.max_connections", contains: "must be 1 or more")
        assertError(parse(minimal(root: #", "limits": {"max_body_bytes": -1}"#)), key: "limits.max_body_bytes", contains: "must be 0 or more")
        assertError(parse(minimal(root: #", "timeouts": {"connect": "0s"}"#)), key: "timeouts.connect", contains: "greater than 0")
        assertError(parse(minimal(root: #", "workers": 99999999999999999999"#)), key: "workers", contains: "too large")
    }

    /// Worker *i* takes the *i*-th allowed CPU, not CPU *i*: a process confined to CPUs 2 and 5
    /// (taskset, a cpuset) binds its workers there, and more workers than CPUs wrap round. Fewer
    /// workers than CPUs, one worker on two CPUs say, are left free.
    func testWorkerCPUAffinity_bindsAWorkerPerCPU_andLeavesFewerWorkersFree() {
        XCTAssertEqual((0..<2).map { WorkerCPUAffinity.auto.cpu(forWorker: $0, of: 2, allowed: [0, 1]) }, [0, 1])
        XCTAssertEqual((0..<5).map { WorkerCPUAffinity.auto.cpu(forWorker: $0, of: 5, allowed: [2, 5]) }, [2, 5, 2, 5, 2])
        XCTAssertEqual(WorkerCPUAffinity.auto.cpu(forWorker: 0, of: 1, allowed: [0, 1]), nil, "one worker, two CPUs")
        XCTAssertEqual((0..<3).map { WorkerCPUAffinity.auto.cpu(forWorker: $0, of: 3, allowed: [0, 1, 2, 3]) }, [nil, nil, nil])
        XCTAssertEqual(WorkerCPUAffinity.auto.cpu(forWorker: 0, of: 1, allowed: [3]), 3, "one worker, one CPU")
        XCTAssertEqual(WorkerCPUAffinity.auto.cpu(forWorker: 0, of: 2, allowed: []), nil, "no mask read: the scheduler decides")
        XCTAssertEqual(WorkerCPUAffinity.off.cpu(forWorker: 1, of: 2, allowed: [0, 1]), nil)
    }

    /// `workers: 0` counts the CPUs the process may run on, not the machine's: under `taskset -c 3`
    /// that is one worker. A mask that could not be read falls back to the online count.
    func testWorkerCount_countsTheAffinityMask_orTheOnlineCPUs() throws {
        let config = try ConfigLoader.parse(minimal(), file: "c.json")
        XCTAssertEqual(config.workers, 0, "the default")
        XCTAssertEqual(config.workerCount(allowedCPUs: [3], onlineCPUs: 2), 1)
        XCTAssertEqual(config.workerCount(allowedCPUs: [0, 2, 5], onlineCPUs: 8), 3)
        XCTAssertEqual(config.workerCount(allowedCPUs: [], onlineCPUs: 4), 4, "no mask read")
        XCTAssertEqual(config.workerCount(allowedCPUs: [], onlineCPUs: 0), 1)
        var three = config
        three.workers = 3
        XCTAssertEqual(three.workerCount(allowedCPUs: [1], onlineCPUs: 2), 3, "a configured count is kept")
    }

    // MARK: - Validation of flag-built configs

    func testValidate_checksAFlagBuiltConfig() {
        var config = Config(
            listeners: [ListenerConfig(name: "web", address: HostPort(host: "127.0.0.1", port: 8080), mode: .http, profile: "web")],
            profiles: [ProfileConfig(name: "web", endpoints: [EndpointConfig(name: "blue", address: HostPort(host: "127.0.0.1", port: 9001))])])
        XCTAssertNoThrow(try ConfigLoader.validate(config, file: "command line"))
        config.listeners[0].profile = "api"
        assertError(try ConfigLoader.validate(config, file: "command line"), errorFile: "command line", key: "listeners[0].profile", contains: "no profile named \"api\"")
        config.listeners[0].profile = "web"
        config.profiles[0].endpoints[0].state = .draining
        assertError(try ConfigLoader.validate(config, file: "command line"), errorFile: "command line", key: "profiles[0].endpoints[0].state", contains: "runtime state")
    }

    // MARK: - Helpers

    /// The package root, found from this file's path (Tests/CutoverCoreTests/ConfigLoaderTests.swift).
    static var packageRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    /// A valid config with one listener, one profile and one endpoint; each piece can be replaced
    /// and `profile`/`root` are appended (starting with a comma) inside the profile and the root.
    private func minimal(
        listeners: String = #"[{"name":"web","address":"127.0.0.1:8080","profile":"web"}]"#,
        endpoints: String = #"[{"name":"blue","address":"127.0.0.1:9001"}]"#,
        profile: String = "", root: String = "", replacingProfiles: Bool = false
    ) -> String {
        let profiles = replacingProfiles ? "" : #", "profiles": [{"name": "web", "endpoints": \#(endpoints)\#(profile)}]"#
        return #"{"listeners": \#(listeners)\#(profiles)\#(root)}"#
    }

    private func parse(_ json: String) -> () throws -> Config {
        { try ConfigLoader.parse(json, file: "c.json") }
    }

    private func captureError(_ body: () throws -> Config) -> ConfigError? {
        do {
            _ = try body()
            return nil
        } catch let error as ConfigError {
            return error
        } catch {
            XCTFail("not a ConfigError: \(error)")
            return nil
        }
    }

    private func assertError(
        _ body: () throws -> Config, errorFile: String = "c.json", key: String, contains reason: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        guard let error = captureError(body) else {
            return XCTFail("expected an error at \(key.isEmpty ? "(root)" : key)", file: file, line: line)
        }
        XCTAssertEqual(error.file, errorFile, file: file, line: line)
        XCTAssertEqual(error.key, key, "\(error)", file: file, line: line)
        XCTAssertTrue(error.reason.contains(reason), "\(error.reason) does not contain \(reason)", file: file, line: line)
    }

    private func assertError(
        _ body: @autoclosure () throws -> Config, errorFile: String = "c.json", key: String, contains reason: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        assertError({ try body() }, errorFile: errorFile, key: key, contains: reason, file: file, line: line)
    }

    private func assertError(
        _ body: @autoclosure () throws -> Void, errorFile: String, key: String, contains reason: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        assertError({ () throws -> Config in
            try body()
            return Config(listeners: [], profiles: [])
        }, errorFile: errorFile, key: key, contains: reason, file: file, line: line)
    }
}

/// The JSON layer on its own: what `JSONSerialization` gets wrong for configs.
final class JSONValueTests: XCTestCase {
    func testBooleansAndNumbers_stayDistinct() throws {
        let value = try JSONValue.parse(Array(#"{"a": true, "b": 1, "c": 0, "d": false, "e": 12345678901234567890}"#.utf8))
        XCTAssertEqual(value["a"], .bool(true))
        XCTAssertEqual(value["b"], .number("1"))
        XCTAssertEqual(value["c"], .number("0"))
        XCTAssertEqual(value["d"], .bool(false))
        XCTAssertEqual(value["e"], .number("12345678901234567890"))
    }

    func testObjects_keepKeyOrder() throws {
        let value = try JSONValue.parse(Array(#"{"z": 1, "a": 2, "m": 3}"#.utf8))
        guard case .object(let members) = value else { return XCTFail("not an object") }
        XCTAssertEqual(members.map(\.key), ["z", "a", "m"])
    }

    func testStringEscapes() throws {
        let value = try JSONValue.parse(Array(#"["a\"b\\c\/d\n\u00e9\ud83d\ude00"]"#.utf8))
        XCTAssertEqual(value, .array([.string("a\"b\\c/d\né😀")]))
    }

    func testMalformedDocuments_areRejectedWithPosition() {
        let cases: [(String, Int, Int, String)] = [
            ("", 1, 1, "empty"),
            ("[1,]", 1, 4, "expected a value"),
            ("{\"a\": 01}", 1, 7, "leading zero"),
            ("{\"a\": tru}", 1, 7, "expected a value"),
            ("{\"a\": 1} x", 1, 10, "after the end"),
            ("{\n\"é\": \"\\x\"}", 2, 7, "invalid escape"),
            ("[\"\u{1}\"]", 1, 3, "control character"),
            ("{\"a\": 1, \"a\": 2}", 1, 10, "duplicate key"),
            (String(repeating: "[", count: 300), 1, 257, "nested deeper"),
        ]
        for (text, line, column, message) in cases {
            do {
                _ = try JSONValue.parse(Array(text.utf8))
                XCTFail("accepted \(text.debugDescription)")
            } catch {
                XCTAssertEqual(error.line, line, "\(text.debugDescription): \(error)")
                XCTAssertEqual(error.column, column, "\(text.debugDescription): \(error)")
                XCTAssertTrue(error.message.contains(message), "\(text.debugDescription): \(error)")
            }
        }
    }
}
