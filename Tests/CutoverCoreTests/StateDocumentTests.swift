import CutoverCore
import XCTest

/// The state file's format: what a restart reads back, including files written by the first proxies.
final class StateDocumentTests: XCTestCase {
    /// Exactly what the version-1 writer (`JSONSerialization`, sorted, pretty-printed) left on disk.
    private let versionOneFile = """
        {
          "profiles" : {
            "web" : {
              "endpoints" : {
                "blue" : {
                  "priority" : 1,
                  "state" : "offline",
                  "weight" : 1
                },
                "green_2" : {
                  "priority" : 1,
                  "state" : "online",
                  "weight" : 5
                }
              },
              "maintenance" : false,
              "paused" : true,
              "readonly" : true
            }
          },
          "version" : 1
        }
        """

    func testVersionOneFile_isReadAsWritten() throws {
        let state = try StateDocument.decode(Array(versionOneFile.utf8)).runtimeState
        let web = try XCTUnwrap(state.profiles["web"])
        XCTAssertEqual(web.endpoints["blue"], EndpointRuntime(admin: .offline, priority: 1, weight: 1))
        XCTAssertEqual(web.endpoints["green_2"], EndpointRuntime(admin: .online, priority: 1, weight: 5), "names are not key-converted")
        XCTAssertTrue(web.paused)
        XCTAssertFalse(web.maintenance)
        XCTAssertEqual(web.readOnly, .on, "a version-1 file's readonly true is the closed gate")
    }

    func testWrite_keepsTheVersionOneKeys_andRoundTrips() throws {
        var state = RuntimeState()
        state.profiles["Web"] = ProfileRuntime(
            endpoints: ["blue": EndpointRuntime(admin: .draining, priority: 1, weight: 1), "green": EndpointRuntime(admin: .online, health: .up, priority: 2, weight: 7)],
            paused: false, maintenance: true, readOnly: .hold)
        let bytes = StateDocument(state).encoded()
        XCTAssertEqual(
            String(decoding: bytes, as: UTF8.self),
            #"{"profiles":{"Web":{"endpoints":{"blue":{"priority":1,"state":"offline","weight":1},"green":{"priority":2,"state":"online","weight":7}},"maintenance":true,"paused":false,"readonly":true,"readonly_gate":"hold"}},"version":1}"#)
        var expected = state
        expected.profiles["Web"]?.endpoints["blue"]?.admin = .offline  // a drain does not survive a restart
        expected.profiles["Web"]?.endpoints["green"]?.health = .unknown  // probes re-learn health
        XCTAssertEqual(try StateDocument.decode(bytes).runtimeState, expected)
    }

    func testMissingGates_meanOff() throws {
        let state = try StateDocument.decode(Array(#"{"version":1,"profiles":{"web":{"endpoints":{}}}}"#.utf8)).runtimeState
        XCTAssertEqual(state.profiles["web"], ProfileRuntime(endpoints: [:]))
    }

    func testBadEntries_areRefusedWithTheirKeyPath() {
        XCTAssertThrowsError(try StateDocument.decode(Array(#"{"version":1,"profiles":{"web":{"endpoints":{"blue":{"state":"up","priority":1,"weight":1}}}}}"#.utf8))) {
            XCTAssertEqual(($0 as? StateDocument.DecodeError)?.key, "profiles.web.endpoints.blue.state", "\($0)")
        }
        XCTAssertThrowsError(try StateDocument.decode(Array(#"{"version":1,"profiles":{"web":{"endpoints":{"blue":{"state":"online","priority":"1","weight":1}}}}}"#.utf8))) {
            XCTAssertEqual(($0 as? StateDocument.DecodeError)?.key, "profiles.web.endpoints.blue.priority", "\($0)")
        }
        // The ranges the config and `set endpoint` enforce hold for the file too.
        for (field, value) in [("weight", "-5"), ("weight", "1001"), ("priority", "-1")] {
            let endpoint = field == "weight" ? #""state":"online","priority":1,"weight":\#(value)"# : #""state":"online","priority":\#(value),"weight":1"#
            XCTAssertThrowsError(try StateDocument.decode(Array(#"{"version":1,"profiles":{"web":{"endpoints":{"blue":{\#(endpoint)}}}}}"#.utf8)), "\(field) \(value)") {
                XCTAssertEqual(($0 as? StateDocument.DecodeError)?.key, "profiles.web.endpoints.blue.\(field)", "\($0)")
            }
        }
        XCTAssertThrowsError(try StateDocument.decode(Array("not json".utf8)))
        XCTAssertThrowsError(try StateDocument.decode(Array(#"{"version":2,"profiles":{}}"#.utf8))) {
            XCTAssertEqual(($0 as? StateDocument.DecodeError)?.key, "version", "\($0)")
        }
    }

    /// Issue 17, defect 8: what a restore changed over the config, in config order, and nothing when nothing differs.
    func testRestoredChanges_nameWhatDiffersFromTheConfig() throws {
        let config = try ConfigLoader.parse(
            #"{"listeners": [{"name": "w", "address": "127.0.0.1:1", "profile": "web"}], "profiles": [{"name": "web", "endpoints": [{"name": "blue", "address": "127.0.0.1:2"}, {"name": "green", "address": "127.0.0.1:3", "state": "offline"}]}]}"#,
            file: "c.json")
        var state = RuntimeState(config: config)
        XCTAssertEqual(state.restoredChanges(over: config), [])
        state.profiles["web"]?.paused = true
        state.profiles["web"]?.endpoints["green"]?.admin = .online
        state.profiles["web"]?.endpoints["blue"]?.priority = 3
        XCTAssertEqual(state.restoredChanges(over: config), ["web: paused", "web/blue priority 3 (config: 1)", "web/green online (config: offline)"])
    }

    /// Issue 17: endpoints added at runtime round-trip through the file, in order, with their settings.
    func testAddedEndpoints_roundTrip_andABadAddressIsRefused() throws {
        var state = RuntimeState(profiles: ["web": ProfileRuntime(endpoints: ["blue": EndpointRuntime(admin: .online, priority: 1, weight: 1)])])
        let green = EndpointConfig(name: "green", address: HostPort(host: "127.0.0.1", port: 9002), priority: 2, weight: 5, state: .offline)
        state.profiles["web"]?.added = [green]
        state.profiles["web"]?.endpoints["green"] = EndpointRuntime(admin: .offline, priority: 2, weight: 5)
        let bytes = StateDocument(state).encoded()
        XCTAssertTrue(String(decoding: bytes, as: UTF8.self).contains(#""added_endpoints":[{"address":"127.0.0.1:9002","name":"green"}]"#))
        XCTAssertEqual(try StateDocument.decode(bytes).runtimeState, state)
        let bad = #"{"profiles":{"web":{"endpoints":{},"added_endpoints":[{"name":"g","address":"nowhere"}]}},"version":1}"#
        XCTAssertThrowsError(try StateDocument.decode(Array(bad.utf8))) { error in
            XCTAssertEqual((error as? StateDocument.DecodeError)?.key, "profiles.web.added_endpoints[0].address")
        }
        // The config file wins over an added endpoint of the same name.
        let config = try ConfigLoader.parse(
            #"{"listeners": [{"name": "w", "address": "127.0.0.1:1", "profile": "web"}], "profiles": [{"name": "web", "endpoints": [{"name": "blue", "address": "127.0.0.1:2"}]}]}"#,
            file: "c.json")
        XCTAssertEqual(config.including(addedEndpointsOf: state).profiles[0].endpoints.map(\.name), ["blue", "green"])
        state.profiles["web"]?.added = [EndpointConfig(name: "blue", address: HostPort(host: "127.0.0.1", port: 7))]
        XCTAssertEqual(config.including(addedEndpointsOf: state).profiles[0].endpoints.map(\.address.port), [2])
    }

    /// The runtime-endpoint commands parse into their cases and refuse what they cannot mean.
    func testRuntimeEndpointCommands_parse() throws {
        XCTAssertEqual(try AdminCommand.parse("add endpoint web/green 127.0.0.1:9002 priority 2 weight 5 offline").command,
                       .addEndpoint(profile: "web", endpoint: "green", address: HostPort(host: "127.0.0.1", port: 9002), priority: 2, weight: 5, offline: true))
        XCTAssertEqual(try AdminCommand.parse("remove endpoint web/green").command, .removeEndpoint(profile: "web", endpoint: "green"))
        XCTAssertEqual(try AdminCommand.parse("set endpoint web/green health down cause consul: failing").command,
                       .setEndpointHealth(profile: "web", endpoint: "green", health: .down, cause: "consul: failing"))
        XCTAssertEqual(try AdminCommand.parse("set endpoint web/green health auto").command,
                       .setEndpointHealth(profile: "web", endpoint: "green", health: nil, cause: nil))
        XCTAssertEqual(try AdminCommand.parse("deploy web 127.0.0.1:9003 --name v2 --timeout 5s").command,
                       .deploy(profile: "web", address: HostPort(host: "127.0.0.1", port: 9003), name: "v2", timeout: .seconds(5)))
        XCTAssertEqual(try AdminCommand.parse("rollback web").command, .rollback(profile: "web"))
        for bad in ["add endpoint web/green", "add endpoint web/green nowhere", "set endpoint web/green health sideways",
                    "set endpoint web/green health up cause", "deploy web", "deploy web 127.0.0.1:1 --timeout soon", "remove endpoint green"] {
            XCTAssertThrowsError(try AdminCommand.parse(bad), bad)
        }
    }
}
