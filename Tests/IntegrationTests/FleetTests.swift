import Foundation
import Glibc
import XCTest

/// Issue 19: several proxies switch as one, their runtime state in a real etcd (`cluster` config).
final class FleetTests: XCTestCase {
    private var dir: TemporaryDirectory!
    private var blue: Backend!
    private var green: Backend!
    private var etcd: EtcdCluster!
    private var proxies: [Proxy] = []

    override func setUpWithError() throws {
        dir = try TemporaryDirectory()
        blue = try Backend(name: "blue", directory: dir)
        green = try Backend(name: "green", directory: dir)
    }

    override func tearDown() {
        for proxy in proxies { proxy.stop() }
        proxies = []
        etcd?.stop()
        blue?.stop()
        green?.stop()
        dir = nil
    }

    /// Starts proxy `node` of a fleet (profile `web`: blue online, green offline; an admin HTTP
    /// listener for `/metrics` and `/health`); `profileExtra` is appended to the profile.
    @discardableResult
    private func startProxy(_ node: String, stateFile: Bool = false, profileExtra: String = "", clusterExtra: String = "") throws -> Proxy {
        let socket = dir.path("\(node).sock")
        let state = stateFile ? #", "state_file": "\#(dir.path("\(node).state"))""# : ""
        let config = """
            { "listeners": [{ "name": "web", "address": "127.0.0.1:0", "profile": "web" }],
              "profiles": [{ "name": "web", "endpoints": [
                  { "name": "blue", "address": "\(blue.address)" },
                  { "name": "green", "address": "\(green.address)", "state": "offline" } ]\(profileExtra) }],
              "admin": { "socket": "\(socket)", "http": "127.0.0.1:0" }, "access_log": "off",
              "cluster": { "etcd": \(etcd.clientURLsJSON), "prefix": "/cutover/test", "node": "\(node)"\(clusterExtra) }\(state) }
            """
        let proxy = try Proxy(config: config, directory: dir, socketPath: socket)
        proxies.append(proxy)
        return proxy
    }

    /// Runs `ctl` with `words` on `proxy` on another thread; the answer is in the returned box once
    /// `group` is done.
    private func ctlInBackground(_ proxy: Proxy, _ words: [String], group: DispatchGroup) -> Answers {
        let box = Answers()
        let socket = proxy.socketPath
        DispatchQueue.global().async(group: group) {
            let answer = (try? IntegrationTests.run(CutoverBinary.url.path, ["ctl", "--socket", socket] + words)) ?? (status: -1, stdout: "", stderr: "ctl failed")
            box.set("answer", answer)
        }
        return box
    }

    /// `show fleet --json` of `proxy`, decoded loosely.
    private func fleet(_ proxy: Proxy) -> [String: Any]? {
        guard let answer = try? proxy.ctl("show fleet --json"), let data = answer.stdout.data(using: .utf8) else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }

    private func fleetNodes(_ proxy: Proxy) -> [String] {
        ((fleet(proxy)?["nodes"] as? [[String: Any]]) ?? []).compactMap { $0["node"] as? String }
    }

    private func backend(_ proxy: Proxy) -> String? {
        try? curl(proxy.url("/")).header("X-Backend")
    }

    /// A switch on one proxy answers once all three applied it, names the three, and no request
    /// that starts after the answer reaches blue through any proxy.
    func testSwitchOnOneProxy_answersWithEveryNode_andNoProxySendsToBlueAfter() throws {
        etcd = try EtcdCluster(size: 1, directory: dir)
        let nodes = ["proxy-1", "proxy-2", "proxy-3"]
        let fleetProxies = try nodes.map { try startProxy($0) }
        XCTAssertTrue(waitUntil(timeout: 10) { self.fleetNodes(fleetProxies[0]) == nodes }, "the three nodes registered: \(fleet(fleetProxies[0]) ?? [:])")
        let loads = fleetProxies.map { _ in LoadClient() }
        for (load, proxy) in zip(loads, fleetProxies) { load.start(port: proxy.port(), connections: 4) }
        XCTAssertTrue(waitUntil(timeout: 10) { loads.allSatisfy { $0.results.count > 100 } }, "load did not start")

        // What a ctl round trip costs by itself, to read the switch's figure against.
        let baselineStart = Date()
        _ = try fleetProxies[0].ctl("show profiles")
        print("fleet switch: a ctl show profiles round trip takes \(Int(Date().timeIntervalSince(baselineStart) * 1000)) ms")
        let asked = Date()
        let switched = try fleetProxies[0].ctl("switch web green --json")
        let answered = Date()
        XCTAssertEqual(switched.status, 0, switched.stdout + switched.stderr)
        let answer = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(switched.stdout.utf8)) as? [String: Any])
        let applied = try XCTUnwrap(answer["fleet"] as? [String: Any], switched.stdout)
        XCTAssertEqual(applied["applied"] as? [String], nodes)
        XCTAssertEqual(applied["pending"] as? [String], [])
        print("fleet switch: \(Int(answered.timeIntervalSince(asked) * 1000)) ms from the command to the answer with \(nodes.count) nodes (ctl process included); the proxy waited \(applied["waited_ms"] ?? "?") ms for the nodes")

        XCTAssertTrue(waitUntil(timeout: 10) { loads.allSatisfy { $0.results.filter { $0.started > answered }.count > 100 } })
        for load in loads { load.stop() }
        for (index, load) in loads.enumerated() {
            XCTAssertEqual(load.failures, [], "client errors through \(nodes[index])")
            XCTAssertEqual(load.results.filter { $0.status != 200 }.count, 0, "non-200 through \(nodes[index])")
            let late = load.results.filter { $0.started > answered && $0.backend != "green" }
            XCTAssertEqual(late.count, 0, "requests through \(nodes[index]) started after the answer but not answered by green")
            XCTAssertGreaterThan(load.results.filter { $0.backend == "blue" }.count, 0, "\(nodes[index]) served blue before")
            // The first request of this proxy on green, after the command was given.
            if let first = load.results.filter({ $0.backend == "green" }).map(\.started).min() {
                print("fleet switch: \(nodes[index])'s first request on green started \(Int(first.timeIntervalSince(asked) * 1000)) ms after the command")
            }
        }
    }

    /// Two switches given at once on two proxies: whenever both were based on the same revision,
    /// exactly one is written and the other is refused with `conflict`; the fleet ends on one state.
    func testConcurrentSwitchesFromTwoProxies_oneWinsTheOtherGetsConflict() throws {
        etcd = try EtcdCluster(size: 1, directory: dir)
        let a = try startProxy("proxy-a")
        let b = try startProxy("proxy-b")
        XCTAssertTrue(waitUntil(timeout: 10) { self.fleetNodes(a).count == 2 })
        var conflicts = 0
        for round in 0..<20 where conflicts == 0 {
            let targets = round % 2 == 0 ? ("green", "blue") : ("blue", "green")
            let group = DispatchGroup()
            let box = Answers()
            for (socket, name, target) in [(a.socketPath, "a", targets.0), (b.socketPath, "b", targets.1)] {
                DispatchQueue.global().async(group: group) {
                    let answer = (try? IntegrationTests.run(CutoverBinary.url.path, ["ctl", "--socket", socket, "switch", "web", target, "--force"])) ?? (status: -1, stdout: "", stderr: "ctl failed")
                    box.set(name, answer)
                }
            }
            group.wait()
            let answers = box.all
            let ok = answers.values.filter { $0.status == 0 }
            let refused = answers.values.filter { $0.status != 0 }
            XCTAssertGreaterThanOrEqual(ok.count, 1, "round \(round): neither switch was written: \(answers)")
            for answer in refused {
                XCTAssertTrue(answer.stdout.contains("ERR conflict") || answer.stderr.contains("ERR conflict"), "round \(round): refused otherwise than by conflict: \(answer)")
            }
            conflicts += refused.count
            // Both proxies end on the same live endpoint: the winner's.
            XCTAssertTrue(waitUntil(timeout: 5) { self.backend(a) != nil && self.backend(a) == self.backend(b) }, "round \(round): the proxies disagree")
        }
        XCTAssertGreaterThan(conflicts, 0, "20 rounds of concurrent switches and never a conflict")
    }

    /// etcd killed: both proxies keep serving their last state, refuse changes with
    /// `store-unavailable` and say so in `show fleet`; a proxy started meanwhile starts on its
    /// state file; once etcd is back, a switch reaches all three.
    func testEtcdDown_proxiesServeStaticAndRefuse_thenConvergeWhenBack() throws {
        etcd = try EtcdCluster(size: 1, directory: dir)
        let a = try startProxy("proxy-a")
        let b = try startProxy("proxy-b")
        XCTAssertTrue(waitUntil(timeout: 10) { self.fleetNodes(a).count == 2 })
        XCTAssertEqual(try a.ctl("switch web green").status, 0)
        XCTAssertEqual(backend(b), "green")

        etcd.kill(0)
        for proxy in [a, b] {
            XCTAssertTrue(waitUntil(timeout: 10) { self.fleet(proxy)?["store"] as? String == "unavailable" }, "show fleet did not say unavailable")
            XCTAssertEqual(backend(proxy), "green", "fail-static: the last applied state is served")
        }
        let refused = try b.ctl("switch web blue")
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue((refused.stdout + refused.stderr).contains("ERR store-unavailable"), refused.stdout + refused.stderr)
        XCTAssertEqual(backend(a), "green", "the refused switch changed nothing")
        XCTAssertEqual(backend(b), "green", "the refused switch changed nothing here either")

        let c = try startProxy("proxy-c")
        XCTAssertTrue(c.child.stderr.contains("etcd unreachable at start"), c.child.stderr)
        XCTAssertEqual(backend(c), "blue", "started on the config's state")

        try etcd.start(0)
        for proxy in [a, b, c] {
            XCTAssertTrue(waitUntil(timeout: 15) { self.fleet(proxy)?["store"] as? String == "available" }, "store did not come back: \(fleet(proxy) ?? [:])")
        }
        XCTAssertTrue(waitUntil(timeout: 10) { self.backend(c) == "green" }, "proxy-c did not converge on the fleet's state")
        XCTAssertTrue(waitUntil(timeout: 10) { self.fleetNodes(a).count == 3 }, "\(fleet(a) ?? [:])")
        let switched = try b.ctl("switch web blue")
        XCTAssertEqual(switched.status, 0, switched.stdout + switched.stderr)
        XCTAssertTrue(switched.stdout.contains("proxy-a, proxy-b, proxy-c"), switched.stdout)
        for proxy in [a, b, c] { XCTAssertEqual(backend(proxy), "blue") }
    }

    /// A 3-member etcd cluster: one member down, switches still work on every node; two down (no
    /// quorum), the proxies serve their last state and refuse changes; both back, a switch reaches all.
    func testThreeMemberCluster_oneDownStillSwitches_twoDownRefuses_thenConverges() throws {
        etcd = try EtcdCluster(size: 3, directory: dir)
        let a = try startProxy("proxy-a")
        let b = try startProxy("proxy-b")
        XCTAssertTrue(waitUntil(timeout: 10) { self.fleetNodes(a).count == 2 })

        etcd.kill(0)
        let switched = try a.ctl("switch web green")
        XCTAssertEqual(switched.status, 0, switched.stdout + switched.stderr)
        XCTAssertTrue(switched.stdout.contains("applied by proxy-a, proxy-b"), switched.stdout)
        XCTAssertEqual(backend(b), "green")

        etcd.kill(1)
        var refused = (status: Int32(0), stdout: "", stderr: "")
        XCTAssertTrue(try waitUntil(timeout: 20) {
            refused = try b.ctl("switch web blue")
            return refused.status != 0
        }, "a switch was accepted without quorum")
        XCTAssertTrue(refused.stdout.contains("ERR store-unavailable"), refused.stdout + refused.stderr)
        for proxy in [a, b] { XCTAssertEqual(backend(proxy), "green", "fail-static without quorum") }

        try etcd.start(0)
        try etcd.start(1)
        var again = (status: Int32(1), stdout: "", stderr: "")
        XCTAssertTrue(try waitUntil(timeout: 30) {
            again = try b.ctl("switch web blue")
            return again.status == 0
        }, "no switch after the members returned: \(again)")
        XCTAssertTrue(again.stdout.contains("applied by proxy-a, proxy-b"), again.stdout)
        for proxy in [a, b] { XCTAssertEqual(backend(proxy), "blue") }
    }

    /// `switch --wait` in a fleet is written before this proxy's wait: the other node serves green
    /// while the old endpoint here still drains a slow request; the answer comes after the drain
    /// and names both nodes.
    func testSwitchWait_isWrittenBeforeTheLocalDrain_otherNodesSwitchAtOnce() throws {
        etcd = try EtcdCluster(size: 1, directory: dir)
        let a = try startProxy("proxy-a")
        let b = try startProxy("proxy-b")
        XCTAssertTrue(waitUntil(timeout: 10) { self.fleetNodes(a).count == 2 })
        let slow = LoadClient()
        slow.startOnce(port: a.port(), connections: 1, path: "/slow?ms=3000")
        defer { slow.stop() }
        XCTAssertTrue(waitUntil { (try? a.ctl("show endpoints web --json").stdout.contains("\"in_flight\":1")) ?? false }, "the slow request is not in flight on blue")

        let group = DispatchGroup()
        let box = ctlInBackground(a, ["switch", "web", "green", "--wait"], group: group)
        XCTAssertTrue(waitUntil(timeout: 10) { self.backend(b) == "green" }, "proxy-b did not switch while proxy-a drained")
        XCTAssertNil(box.all["answer"], "switch --wait answered before proxy-a's drain ended: \(box.all)")
        XCTAssertEqual(group.wait(timeout: .now() + 20), .success, "switch --wait did not answer")
        let answer = try XCTUnwrap(box.all["answer"])
        XCTAssertEqual(answer.status, 0, answer.stdout + answer.stderr)
        XCTAssertTrue(answer.stdout.contains("blue: drained"), answer.stdout)
        XCTAssertTrue(answer.stdout.contains("applied by proxy-a, proxy-b"), answer.stdout)
        XCTAssertTrue(waitUntil { slow.results.count == 1 })
        XCTAssertEqual(slow.results.map(\.backend), ["blue"], "the slow request finished on blue")
    }

    /// A guarded switch judged on one proxy breaches: its revert is written to etcd, so the other
    /// node goes back to blue too.
    func testGuardBreachRevert_isWrittenToEtcd_everyNodeReverts() throws {
        green.stop()
        green = try Backend(name: "green", directory: dir, options: ["--fail-ratio", "0.5"])
        etcd = try EtcdCluster(size: 1, directory: dir)
        let guardConfig = #", "guard": { "max_5xx_ratio": 0.05, "min_requests": 10, "interval": "200ms" }"#
        let a = try startProxy("proxy-a", profileExtra: guardConfig)
        let b = try startProxy("proxy-b", profileExtra: guardConfig)
        XCTAssertTrue(waitUntil(timeout: 10) { self.fleetNodes(a).count == 2 })
        let load = LoadClient()
        load.start(port: a.port(), connections: 2)
        defer { load.stop() }

        let switched = try a.ctl("switch", "web", "green", "--force", "--guard", "30s", "--wait-guard")
        XCTAssertNotEqual(switched.status, 0)
        XCTAssertTrue(switched.stdout.contains("ERR guard-breach"), switched.stdout + switched.stderr)
        XCTAssertEqual(backend(a), "blue", "the judging proxy reverted")
        XCTAssertTrue(waitUntil(timeout: 10) { self.backend(b) == "blue" }, "proxy-b did not revert: \(try! b.ctl("show endpoints web").stdout)")
        XCTAssertTrue(waitUntil(timeout: 10) { self.allApplied(a, count: 2) }, "both nodes applied the revert's revision: \(fleet(a) ?? [:])")
        XCTAssertTrue(a.child.stderr.contains("guard revert to blue written to etcd"), a.child.stderr)
    }

    /// Commands that would change one proxy's endpoints are refused with `fleet-unsupported` and
    /// change nothing; `set endpoint … health` says it is this node's alone; `rollback` reaches
    /// every node; the refusals and races are counted in `/metrics`.
    func testEndpointCommands_areRefusedOrSayTheyAreLocal_rollbackReachesEveryNode() throws {
        etcd = try EtcdCluster(size: 1, directory: dir)
        let a = try startProxy("proxy-a")
        let b = try startProxy("proxy-b")
        XCTAssertTrue(waitUntil(timeout: 10) { self.fleetNodes(a).count == 2 })
        for words in [["add", "endpoint", "web/canary", green.address], ["remove", "endpoint", "web/green"], ["deploy", "web", green.address]] {
            let refused = try IntegrationTests.run(CutoverBinary.url.path, ["ctl", "--socket", a.socketPath] + words)
            XCTAssertNotEqual(refused.status, 0, words.joined(separator: " "))
            XCTAssertTrue(refused.stdout.contains("ERR fleet-unsupported"), "\(words): \(refused.stdout + refused.stderr)")
        }
        let endpoints = try a.ctl("show endpoints web").stdout
        XCTAssertFalse(endpoints.contains("canary"), endpoints)
        XCTAssertTrue(endpoints.contains("green"), endpoints)

        let health = try a.ctl("set", "endpoint", "web/green", "health", "down")
        XCTAssertEqual(health.status, 0, health.stdout + health.stderr)
        XCTAssertTrue(health.stdout.contains("this node only"), health.stdout)
        XCTAssertEqual(try a.ctl("set", "endpoint", "web/green", "health", "up").status, 0)

        XCTAssertEqual(try a.ctl("switch web green").status, 0)
        XCTAssertEqual(backend(b), "green")
        let rolledBack = try a.ctl("rollback web")
        XCTAssertEqual(rolledBack.status, 0, rolledBack.stdout + rolledBack.stderr)
        XCTAssertTrue(waitUntil(timeout: 10) { self.backend(b) == "blue" }, "proxy-b did not follow the rollback")

        let metrics = try a.metrics()
        XCTAssertEqual(metrics.value("cutover_fleet_store_reachable", ["node": "proxy-a"]), 1)
        let applied = try XCTUnwrap(metrics.value("cutover_fleet_applied_revision", ["node": "proxy-a"]))
        XCTAssertGreaterThan(applied, 0)
        XCTAssertEqual(metrics.value("cutover_fleet_mutations_refused_total", ["node": "proxy-a"]), 0)
        XCTAssertNotNil(metrics.value("cutover_fleet_last_sync_age_seconds", ["node": "proxy-a"]))

        etcd.kill(0)
        XCTAssertTrue(waitUntil(timeout: 10) { (try? a.metric("cutover_fleet_store_reachable", ["node": "proxy-a"])) == 0 }, "the metric did not say unreachable")
        XCTAssertNotEqual(try a.ctl("switch web green").status, 0)
        XCTAssertEqual(try a.metric("cutover_fleet_mutations_refused_total", ["node": "proxy-a"]), 1)
        let port = try XCTUnwrap(a.adminHTTPPort)
        let health503 = try curl("http://127.0.0.1:\(port)/health")
        XCTAssertEqual(health503.code, 200, "fail-static: /health stays 200")
        XCTAssertTrue(health503.body.contains("fleet proxy-a: store unavailable"), health503.body)
    }

    /// A proxy SIGKILLed just before a switch and started again while the switch waits comes up on
    /// the fleet's state (not its own state file's), and the switch answers with every node.
    func testProxyKilledAndRestartedDuringSwitch_comesUpOnTheFleetsState() throws {
        etcd = try EtcdCluster(size: 1, directory: dir)
        let a = try startProxy("proxy-a")
        _ = try startProxy("proxy-b")
        let c = try startProxy("proxy-c", stateFile: true)
        XCTAssertTrue(waitUntil(timeout: 10) { self.fleetNodes(a).count == 3 })
        c.child.signal(SIGKILL)
        _ = c.child.waitForExit(timeout: 10)

        // Its record lives on for the lease's 5 s: the switch waits for proxy-c to apply it.
        let group = DispatchGroup()
        let box = ctlInBackground(a, ["switch", "web", "green"], group: group)
        XCTAssertTrue(waitUntil(timeout: 10) { self.backend(a) == "green" })
        let restarted = try startProxy("proxy-c", stateFile: true)
        XCTAssertEqual(group.wait(timeout: .now() + 20), .success)
        let answer = try XCTUnwrap(box.all["answer"])
        XCTAssertEqual(backend(restarted), "green", "the restarted proxy serves the fleet's state")
        XCTAssertTrue(restarted.child.stderr.contains("starts on the fleet's state"), restarted.child.stderr)
        // Restarted within the 5 s, it applied the switch in time; later, it is named as pending.
        XCTAssertTrue(answer.status == 0 ? answer.stdout.contains("proxy-a, proxy-b, proxy-c") : answer.stdout.contains("ERR not-applied"), answer.stdout + answer.stderr)
        XCTAssertTrue(waitUntil(timeout: 10) { self.allApplied(a, count: 3) }, "\(fleet(a) ?? [:])")
    }

    /// A node record whose lease is revoked behind the proxy's back (as when etcd was away past
    /// the TTL) is registered again under a new lease; the store never reads as unavailable.
    func testRevokedLease_isGrantedAgain_andTheRecordComesBack() throws {
        etcd = try EtcdCluster(size: 1, directory: dir)
        let a = try startProxy("proxy-a")
        XCTAssertTrue(waitUntil(timeout: 10) { self.fleetNodes(a) == ["proxy-a"] })
        let lease = try XCTUnwrap(recordLease("proxy-a"))
        let revoked = try curl(etcd.members[0].clientURL + "/v3/lease/revoke", ["-X", "POST", "-d", #"{"ID":"\#(lease)"}"#])
        XCTAssertEqual(revoked.code, 200, revoked.body)
        XCTAssertTrue(waitUntil(timeout: 10) { (self.recordLease("proxy-a") ?? lease) != lease }, "the record did not come back under a new lease")
        XCTAssertEqual(fleet(a)?["store"] as? String, "available")

        // etcd restarted: the record is there again afterwards and a switch names the node.
        etcd.kill(0)
        try etcd.start(0)
        XCTAssertTrue(waitUntil(timeout: 15) { self.fleet(a)?["store"] as? String == "available" && self.fleetNodes(a) == ["proxy-a"] })
        let switched = try a.ctl("switch web green")
        XCTAssertEqual(switched.status, 0, switched.stdout + switched.stderr)
        XCTAssertTrue(switched.stdout.contains("applied by proxy-a"), switched.stdout)
    }

    /// `cutover upgrade plan` on a runbook that targets one proxy of a fleet lists the fleet's nodes
    /// (text and JSON); a plain proxy would list none.
    func testUpgradePlan_showsTheFleetsNodes() throws {
        etcd = try EtcdCluster(size: 1, directory: dir)
        let a = try startProxy("proxy-a")
        _ = try startProxy("proxy-b")
        XCTAssertTrue(waitUntil(timeout: 10) { self.fleetNodes(a).count == 2 })
        let runbook = try dir.write("runbook.json", """
            { "name": "fleet-switch", "description": "switch a fleet",
              "steps": [{ "kind": "switch", "socket": "\(a.socketPath)", "profile": "web", "endpoint": "green", "timeout": "20s" }] }
            """)
        let plan = try IntegrationTests.run(CutoverBinary.url.path, ["upgrade", "plan", runbook])
        XCTAssertEqual(plan.status, 0, plan.stdout + plan.stderr)
        XCTAssertTrue(plan.stdout.contains("is node proxy-a of fleet /cutover/test (store available); its proxy steps reach 2 nodes:"), plan.stdout)
        XCTAssertTrue(plan.stdout.contains("  proxy-a  applied") && plan.stdout.contains("  proxy-b  applied"), plan.stdout)
        let json = try IntegrationTests.run(CutoverBinary.url.path, ["upgrade", "plan", runbook, "--json"])
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any], json.stdout)
        let fleets = try XCTUnwrap((object["plan"] as? [String: Any])?["fleets"] as? [[String: Any]], json.stdout)
        XCTAssertEqual(fleets.first?["socket"] as? String, a.socketPath)
        let nodes = ((fleets.first?["fleet"] as? [String: Any])?["nodes"] as? [[String: Any]])?.compactMap { $0["node"] as? String }
        XCTAssertEqual(nodes, ["proxy-a", "proxy-b"])
    }

    /// etcd members on TLS that ask for client certificates (`https://`, `cluster.tls`): two proxies
    /// with the CA and a client certificate form the fleet and switch; one without a client
    /// certificate cannot reach etcd and says why.
    func testTLSToEtcd_withClientCertificates_switches_andAProxyWithoutOneIsRefused() throws {
        let certificates = try TestCertificates(directory: dir)
        let server = try certificates.leaf("etcd", names: ["etcd.test"])
        let client = try certificates.leaf("proxy-client", names: ["proxy-client"])
        etcd = try EtcdCluster(size: 1, directory: dir, tls: .init(cert: server.cert, key: server.key, clientCA: certificates.caPath),
                               curlTLSOptions: ["-k", "--cert", client.cert, "--key", client.key])
        let tls = #", "tls": { "ca": "\#(certificates.caPath)", "cert": "\#(client.cert)", "key": "\#(client.key)", "server_name": "etcd.test" }"#
        try assertTwoProxiesSwitchAsOne(clusterExtra: tls)

        let noCertificate = try startProxy("proxy-c", clusterExtra: #", "tls": { "ca": "\#(certificates.caPath)", "server_name": "etcd.test" }"#)
        XCTAssertTrue(noCertificate.child.stderr.contains("etcd unreachable at start"), noCertificate.child.stderr)
        XCTAssertTrue(noCertificate.child.stderr.contains("TLS"), noCertificate.child.stderr)
        XCTAssertEqual(backend(noCertificate), "blue", "not in the fleet: it serves its config's state")
        let wrongName = try startProxy("proxy-d", clusterExtra: #", "tls": { "ca": "\#(certificates.caPath)", "cert": "\#(client.cert)", "key": "\#(client.key)" }"#)
        XCTAssertTrue(wrongName.child.stderr.contains("certificate verify failed"), "the member's certificate is for etcd.test, not 127.0.0.1: \(wrongName.child.stderr)")
    }

    /// etcd with authentication on (`etcdctl user add`, `auth enable`): proxies with
    /// `cluster.username`/`password` get a token and work as a fleet, and again after the member
    /// restarted (its tokens gone); a wrong password is refused.
    func testEtcdAuth_usernameAndPassword_getATokenAndSwitch_aWrongPasswordIsRefused() throws {
        etcd = try EtcdCluster(size: 1, directory: dir)
        try etcd.etcdctl("user", "add", "root:s3cret")
        try etcd.etcdctl("auth", "enable")
        let credentials = #", "username": "root", "password": "s3cret""#
        try assertTwoProxiesSwitchAsOne(clusterExtra: credentials)

        // A restarted member has forgotten its simple tokens: the proxies ask for new ones.
        etcd.kill(0)
        try etcd.start(0)
        let a = proxies[0]
        var again = (status: Int32(1), stdout: "", stderr: "")
        XCTAssertTrue(try waitUntil(timeout: 20) {
            again = try a.ctl("switch web blue")
            return again.status == 0
        }, "no switch after etcd restarted: \(again)")
        XCTAssertTrue(again.stdout.contains("applied by proxy-a, proxy-b"), again.stdout)
        XCTAssertEqual(backend(proxies[1]), "blue")

        let wrong = try startProxy("proxy-c", clusterExtra: #", "username": "root", "password": "wrong""#)
        XCTAssertTrue(wrong.child.stderr.contains("authentication as root refused"), wrong.child.stderr)
        XCTAssertEqual(backend(wrong), "blue")
    }

    /// proxy-a and proxy-b (with `clusterExtra` in their `cluster`) register, and a switch on
    /// proxy-a answers with both and reaches proxy-b (through its watch).
    private func assertTwoProxiesSwitchAsOne(clusterExtra: String, line: UInt = #line) throws {
        let a = try startProxy("proxy-a", clusterExtra: clusterExtra)
        let b = try startProxy("proxy-b", clusterExtra: clusterExtra)
        XCTAssertTrue(waitUntil(timeout: 10) { self.fleetNodes(a).count == 2 }, "\(fleet(a) ?? [:])\n\(a.child.stderr)", line: line)
        let switched = try a.ctl("switch web green")
        XCTAssertEqual(switched.status, 0, switched.stdout + switched.stderr, line: line)
        XCTAssertTrue(switched.stdout.contains("applied by proxy-a, proxy-b"), switched.stdout, line: line)
        XCTAssertEqual(backend(b), "green", line: line)
    }

    /// Whether `count` nodes are registered and each serves the latest state (lag 0), per `proxy`.
    private func allApplied(_ proxy: Proxy, count: Int) -> Bool {
        let nodes = (fleet(proxy)?["nodes"] as? [[String: Any]]) ?? []
        return nodes.count == count && Set(nodes.compactMap { $0["lag"] as? Int }) == [0]
    }

    /// The lease of `node`'s record, read from etcd directly; `nil` while there is no record.
    private func recordLease(_ node: String) -> String? {
        let key = Data("/cutover/test/nodes/\(node)".utf8).base64EncodedString()
        guard let answer = try? curl(etcd.members[0].clientURL + "/v3/kv/range", ["-X", "POST", "-d", #"{"key":"\#(key)"}"#]),
              let object = try? JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any],
              let kv = (object["kvs"] as? [[String: Any]])?.first else { return nil }
        return kv["lease"] as? String
    }
}

/// The answers of concurrent `ctl` runs, by name.
private final class Answers: @unchecked Sendable {  // `answers` is guarded by `lock`
    private let lock = NSLock()
    private var answers: [String: (status: Int32, stdout: String, stderr: String)] = [:]

    func set(_ name: String, _ answer: (status: Int32, stdout: String, stderr: String)) { lock.withLock { answers[name] = answer } }
    var all: [String: (status: Int32, stdout: String, stderr: String)] { lock.withLock { answers } }
}
