import CutoverCore
import Foundation
import XCTest

/// The pure half of the fleet: key layout, etcd's JSON as it comes, the stream decoder, adopting a
/// state document, the roster, and the `cluster` config.
final class FleetStateTests: XCTestCase {
    // MARK: - Keys

    func testKeys_layOutStateAndNodesUnderThePrefix() {
        let keys = FleetKeys(prefix: "/cutover/prod")
        XCTAssertEqual(keys.state, "/cutover/prod/state")
        XCTAssertEqual(keys.node("proxy-1"), "/cutover/prod/nodes/proxy-1")
        XCTAssertEqual(keys.nodeName(ofKey: "/cutover/prod/nodes/proxy-1"), "proxy-1")
        XCTAssertNil(keys.nodeName(ofKey: "/cutover/prod/state"))
        XCTAssertNil(keys.nodeName(ofKey: "/cutover/prod/nodes/"))
    }

    func testRangeEnd_incrementsTheLastByte_andDropsTrailingFF() {
        XCTAssertEqual(FleetKeys.rangeEnd(ofPrefix: Array("/a/".utf8)), Array("/a0".utf8))
        XCTAssertEqual(FleetKeys.rangeEnd(ofPrefix: [0x61, 0xff, 0xff]), [0x62])
        XCTAssertEqual(FleetKeys.rangeEnd(ofPrefix: [0xff]), [0])
    }

    // MARK: - etcd's JSON

    func testTxnRequest_isEtcdsSpelling() throws {
        let request = EtcdTxnRequest(key: "/p/state", basedOn: 7, put: Array("{}".utf8))
        let text = String(decoding: try EtcdJSON.encoder.encode(request), as: UTF8.self)
        XCTAssertEqual(
            text,
            #"{"compare":[{"key":"L3Avc3RhdGU=","mod_revision":"7","result":"EQUAL","target":"MOD"}],"failure":[{"request_range":{"key":"L3Avc3RhdGU="}}],"success":[{"request_put":{"key":"L3Avc3RhdGU=","value":"e30="}}]}"#)
    }

    func testLeaseRequests_useTTLAndID() throws {
        XCTAssertEqual(String(decoding: try EtcdJSON.encoder.encode(EtcdLeaseGrantRequest(seconds: 5)), as: UTF8.self), #"{"TTL":"5"}"#)
        XCTAssertEqual(String(decoding: try EtcdJSON.encoder.encode(EtcdLeaseKeepAliveRequest(lease: 42)), as: UTF8.self), #"{"ID":"42"}"#)
    }

    /// Answers as etcd 3.4 wrote them (64-bit numbers as strings, `succeeded` left out when false).
    func testEtcdAnswers_decode() throws {
        let range = #"{"header":{"cluster_id":"324952591200643719","member_id":"10678291898607172741","revision":"2","raft_term":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}"#
        let decoded = try EtcdJSON.decoder.decode(EtcdRangeResponse.self, from: Data(range.utf8))
        XCTAssertEqual(decoded.header?.revision?.value, 2)
        XCTAssertEqual(decoded.kvs?.first?.keyText, "foo")
        XCTAssertEqual(decoded.kvs?.first?.valueBytes, Array("bar".utf8))
        XCTAssertEqual(decoded.kvs?.first?.revision, 2)

        let failed = #"{"header":{"revision":"3"},"responses":[{"response_range":{"header":{"revision":"3"},"kvs":[{"key":"Zm9v","mod_revision":"3","value":"YmF6"}],"count":"1"}}]}"#
        let txn = try EtcdJSON.decoder.decode(EtcdTxnResponse.self, from: Data(failed.utf8))
        XCTAssertNotEqual(txn.succeeded, true)
        XCTAssertEqual(txn.responses?.first?.responseRange?.kvs?.first?.revision, 3)

        let expired = #"{"result":{"header":{"revision":"3"},"ID":"2324035753002909448"}}"#
        XCTAssertEqual(try EtcdJSON.decoder.decode(EtcdStreamed<EtcdLease>.self, from: Data(expired.utf8)).result?.isAlive, false)
        let alive = #"{"result":{"header":{"revision":"3"},"ID":"2324035753002909448","TTL":"5"}}"#
        XCTAssertEqual(try EtcdJSON.decoder.decode(EtcdStreamed<EtcdLease>.self, from: Data(alive.utf8)).result?.isAlive, true)
    }

    // MARK: - Stream decoder

    /// Two watch messages in two chunks, fed one byte at a time, then the last chunk.
    func testStreamDecoder_cutsMessagesWhateverTheReads() throws {
        let first = #"{"result":{"created":true}}"# + "\n"
        let second = #"{"result":{"events":[{"kv":{"key":"Zm9v","mod_revision":"3"}}]}}"# + "\n"
        let body = String(first.utf8.count, radix: 16) + "\r\n" + first + "\r\n" + String(second.utf8.count, radix: 16) + "\r\n" + second + "\r\n0\r\n\r\n"
        var decoder = EtcdStreamDecoder()
        var messages: [String] = []
        for byte in Array(body.utf8) {
            messages += try decoder.feed([byte]).map { String(decoding: $0, as: UTF8.self) }
        }
        XCTAssertEqual(messages, [first, second].map { String($0.dropLast()) })
        XCTAssertTrue(decoder.isFinished)
    }

    /// A message split across two chunks is one message.
    func testStreamDecoder_joinsAMessageSplitAcrossChunks() throws {
        var decoder = EtcdStreamDecoder()
        XCTAssertEqual(try decoder.feed(Array("3\r\n{\"a\r\n".utf8)), [])
        XCTAssertEqual(try decoder.feed(Array("4\r\n\":1}\r\n1\r\n\n\r\n".utf8)), [Array(#"{"a":1}"#.utf8)])
    }

    func testStreamDecoder_refusesABadChunkSize() {
        var decoder = EtcdStreamDecoder()
        XCTAssertThrowsError(try decoder.feed(Array("zz\r\n".utf8)))
    }

    // MARK: - Adopting

    private func config() throws -> Config {
        try ConfigLoader.parse(
            #"{"listeners":[{"name":"web","address":"127.0.0.1:8080","profile":"web"}],"profiles":[{"name":"web","endpoints":[{"name":"blue","address":"127.0.0.1:9001"},{"name":"green","address":"127.0.0.1:9002","state":"offline"}]}]}"#,
            file: "c.json")
    }

    /// A remote switch to green: blue drains here (it had work), health is this proxy's own.
    func testAdopting_takesTheDocument_keepsHealth_andDrainsWhatLeft() throws {
        let config = try config()
        var local = RuntimeState(config: config)
        local.profiles["web"]?.endpoints["blue"]?.health = .up
        local.profiles["web"]?.endpoints["green"]?.health = .down
        let remote = StateDocument(profiles: [
            "web": .init(
                endpoints: ["blue": .init(state: "offline", priority: 0, weight: 1), "green": .init(state: "online", priority: 0, weight: 3)],
                paused: true, maintenance: false, readonly: .hold)
        ])
        let (state, draining) = local.adopting(remote, config: config)
        XCTAssertEqual(draining, ["web/blue"])
        XCTAssertEqual(state.profiles["web"]?.endpoints["blue"]?.admin, .draining)
        XCTAssertEqual(state.profiles["web"]?.endpoints["blue"]?.health, .up)
        XCTAssertEqual(state.profiles["web"]?.endpoints["green"]?.admin, .online)
        XCTAssertEqual(state.profiles["web"]?.endpoints["green"]?.health, .down)
        XCTAssertEqual(state.profiles["web"]?.endpoints["green"]?.weight, 3)
        XCTAssertEqual(state.profiles["web"]?.paused, true)
        XCTAssertEqual(state.profiles["web"]?.readOnly, .hold)
    }

    /// Adopting the document of the state already served changes nothing and drains nothing.
    func testAdopting_theSameState_isANoOp() throws {
        let config = try config()
        let local = RuntimeState(config: config)
        let (state, draining) = local.adopting(StateDocument(local), config: config)
        XCTAssertEqual(state, local)
        XCTAssertEqual(draining, [])
    }

    // MARK: - Roster

    func testRoster_namesTheNodesBehind_andTheirLag() {
        let roster = FleetRoster(records: [
            "b": FleetNodeRecord(node: "b", appliedRevision: 9, version: "1"),
            "a": FleetNodeRecord(node: "a", appliedRevision: 12, version: "1"),
        ])
        XCTAssertEqual(roster.behind(12), ["b"])
        XCTAssertEqual(roster.behind(9), [])
        XCTAssertEqual(roster.statuses(stateRevision: 12).map(\.lag), [0, 3])
        XCTAssertEqual(JSONCoding.line(roster.records["a"]!), #"{"applied_revision":12,"node":"a","version":"1"}"#)
    }

    func testShowFleet_parses() throws {
        let line = try AdminCommand.parse("show fleet --json")
        XCTAssertEqual(line.command, .showFleet)
        XCTAssertTrue(line.json)
        XCTAssertFalse(AdminCommand.showFleet.isMutation)
        XCTAssertThrowsError(try AdminCommand.parse("show fleet now"))
    }

    // MARK: - Config

    private func clusterConfig(_ cluster: String) -> String {
        #"{"listeners":[{"name":"web","address":"127.0.0.1:8080","profile":"web"}],"profiles":[{"name":"web","endpoints":[{"name":"blue","address":"127.0.0.1:9001"}]}],"cluster":\#(cluster)}"#
    }

    func testClusterConfig_decodes() throws {
        let config = try ConfigLoader.parse(clusterConfig(#"{"etcd":["http://127.0.0.1:2379","http://10.0.0.2:2379/"],"prefix":"/cutover/prod","node":"proxy-1"}"#), file: "c.json")
        XCTAssertEqual(config.cluster, ClusterConfig(etcd: [EtcdMember(host: "127.0.0.1", port: 2379), EtcdMember(host: "10.0.0.2", port: 2379)], prefix: "/cutover/prod", node: "proxy-1"))
        XCTAssertNil(try ConfigLoader.parse(clusterConfig("null").replacingOccurrences(of: #","cluster":null"#, with: ""), file: "c.json").cluster)
    }

    func testClusterConfig_tlsAndCredentials_decode() throws {
        let config = try ConfigLoader.parse(clusterConfig(#"{"etcd":["https://etcd-1:2379"],"prefix":"/p","node":"n","tls":{"ca":"/ca.pem","cert":"/c.pem","key":"/c.key","server_name":"etcd"},"username":"root","password":"pw"}"#), file: "c.json")
        XCTAssertEqual(config.cluster?.etcd, [EtcdMember(host: "etcd-1", port: 2379, secure: true)])
        XCTAssertEqual(config.cluster?.etcd.first?.description, "https://etcd-1:2379")
        XCTAssertEqual(config.cluster?.tls, EtcdTLSConfig(ca: "/ca.pem", cert: "/c.pem", key: "/c.key", serverName: "etcd"))
        XCTAssertEqual(config.cluster?.credentials, EtcdCredentials(username: "root", password: "pw"))
    }

    func testClusterConfig_errorsNameTheKey() {
        let cases: [(String, String)] = [
            (#"{"etcd":["ftp://127.0.0.1:2379"],"prefix":"/p","node":"n"}"#, "cluster.etcd[0]"),
            (#"{"etcd":["http://127.0.0.1:2379"],"prefix":"/p","node":"n","tls":{"ca":"/ca.pem"}}"#, "cluster.tls"),
            (#"{"etcd":["https://127.0.0.1:2379"],"prefix":"/p","node":"n","tls":{"cert":"/c.pem"}}"#, "cluster.tls.key"),
            (#"{"etcd":["https://127.0.0.1:2379"],"prefix":"/p","node":"n","tls":{"crt":"/c.pem"}}"#, "cluster.tls.crt"),
            (#"{"etcd":["http://127.0.0.1:2379"],"prefix":"/p","node":"n","username":"root"}"#, "cluster.password"),
            (#"{"etcd":[2379],"prefix":"/p","node":"n"}"#, "cluster.etcd[0]"),
            (#"{"etcd":[],"prefix":"/p","node":"n"}"#, "cluster.etcd"),
            (#"{"etcd":["http://127.0.0.1:2379"],"prefix":"p","node":"n"}"#, "cluster.prefix"),
            (#"{"etcd":["http://127.0.0.1:2379"],"prefix":"/p/","node":"n"}"#, "cluster.prefix"),
            (#"{"etcd":["http://127.0.0.1:2379"],"prefix":"/p","node":"a b"}"#, "cluster.node"),
            (#"{"etcd":["http://127.0.0.1:2379"],"prefix":"/p"}"#, "cluster.node"),
            (#"{"etcd":["http://127.0.0.1:2379"],"prefix":"/p","node":"n","tls":true}"#, "cluster.tls"),
        ]
        for (cluster, key) in cases {
            XCTAssertThrowsError(try ConfigLoader.parse(clusterConfig(cluster), file: "c.json"), cluster) { error in
                XCTAssertEqual((error as? ConfigError)?.key, key, "\(error)")
            }
        }
    }
}
