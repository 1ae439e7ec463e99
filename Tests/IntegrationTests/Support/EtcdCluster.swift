import Foundation
import Glibc
import XCTest

/// Real etcd members (Debian's `etcd-server`, installed by `.ci/run`) on 127.0.0.1, free ports and
/// data directories in the test's temp dir; a member can be killed and started again on the same
/// ports and data.
final class EtcdCluster {
    /// A member's server certificate and the CA its clients must present certificates from
    /// (`--client-cert-auth`).
    struct TLSFiles {
        let cert: String
        let key: String
        let clientCA: String
    }

    struct Member {
        let name: String
        let clientPort: UInt16
        let peerPort: UInt16
        let secure: Bool
        var clientURL: String { "\(secure ? "https" : "http")://127.0.0.1:\(clientPort)" }
        var peerURL: String { "http://127.0.0.1:\(peerPort)" }
    }

    let members: [Member]
    private let directory: TemporaryDirectory
    private let tls: TLSFiles?
    /// `curl` options that pass the members' client-certificate check (health checks only: they
    /// skip verifying the member, the proxy under test does verify it).
    var curlTLSOptions: [String] = []
    private var processes: [Int: ChildProcess] = [:]

    /// Starts `size` members (clients over TLS with `tls`) and waits until the cluster answers;
    /// `curlTLSOptions` must be set for a TLS cluster's health check to pass.
    init(size: Int, directory: TemporaryDirectory, tls: TLSFiles? = nil, curlTLSOptions: [String] = []) throws {
        self.directory = directory
        self.tls = tls
        self.curlTLSOptions = curlTLSOptions
        members = (0..<size).map { Member(name: "e\($0)", clientPort: TestUpstream.closedPort(), peerPort: TestUpstream.closedPort(), secure: tls != nil) }
        for index in members.indices { try start(index) }
        guard waitUntil(timeout: 20, { self.isHealthy }) else {
            throw FixtureError("etcd did not become healthy: \(processes.values.map(\.stderr).joined(separator: "\n").suffix(2000))")
        }
    }

    /// The client URLs, as a JSON array for a `cluster.etcd` config.
    var clientURLsJSON: String { "[" + members.map { "\"\($0.clientURL)\"" }.joined(separator: ", ") + "]" }

    /// Starts (or restarts) member `index` on its ports and data directory.
    func start(_ index: Int) throws {
        let member = members[index]
        let initialCluster = members.map { "\($0.name)=\($0.peerURL)" }.joined(separator: ",")
        let dataDirectory = directory.path("etcd-\(member.name)")
        let restarting = FileManager.default.fileExists(atPath: dataDirectory)
        processes[index] = try ChildProcess(
            URL(fileURLWithPath: "/usr/bin/etcd"),
            [
                "--name", member.name, "--data-dir", dataDirectory,
                "--listen-client-urls", member.clientURL, "--advertise-client-urls", member.clientURL,
                "--listen-peer-urls", member.peerURL, "--initial-advertise-peer-urls", member.peerURL,
                "--initial-cluster", initialCluster, "--initial-cluster-state", restarting ? "existing" : "new",
                "--heartbeat-interval", "50", "--election-timeout", "500",
            ] + (tls.map { ["--cert-file", $0.cert, "--key-file", $0.key, "--client-cert-auth", "--trusted-ca-file", $0.clientCA] } ?? []), directory: directory, label: "etcd-\(member.name)-\(UUID().uuidString.prefix(4))")
    }

    /// SIGKILLs member `index` and waits for it to be gone.
    func kill(_ index: Int) {
        guard let process = processes[index] else { return }
        process.signal(SIGKILL)
        _ = process.waitForExit(timeout: 10)
        processes[index] = nil
    }

    /// Whether every running member answers `/health` with `"health":"true"`.
    var isHealthy: Bool {
        processes.keys.allSatisfy { index in
            (try? curl(members[index].clientURL + "/health", curlTLSOptions, timeout: 2))?.body.contains("\"true\"") ?? false
        }
    }

    /// Runs `etcdctl` (Debian's `etcd-client`) against member `index`.
    @discardableResult
    func etcdctl(_ arguments: String..., member index: Int = 0) throws -> (status: Int32, stdout: String, stderr: String) {
        let result = try run("/usr/bin/etcdctl", ["--endpoints", members[index].clientURL] + arguments)
        guard result.status == 0 else { throw FixtureError("etcdctl \(arguments.first ?? ""): \(result.stdout + result.stderr)") }
        return result
    }

    func stop() {
        for index in processes.keys { processes[index]?.stop() }
        processes = [:]
    }

    deinit { stop() }
}
