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
}
