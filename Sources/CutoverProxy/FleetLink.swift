import CutoverCore
import Foundation
import Synchronization

/// A fleet proxy's link to etcd: the client, and what this proxy knows of the fleet (the state
/// revision it serves, the store's reachability, its lease, the nodes last read).
///
/// The bookkeeping is behind one `Mutex`, read by the admin threads and written by the fleet's
/// two threads (watch, lease); `commits` serialises this proxy's own mutations, held across their
/// etcd round trips (never on the control queue).
final class FleetLink: Sendable {
    /// What the proxy knows of the fleet.
    struct Book {
        var store: FleetStore = .unavailable(reason: "not contacted yet")
        /// The `mod_revision` of the state document this proxy serves (0: none from etcd yet).
        var appliedRevision: Int64 = 0
        /// The document at `appliedRevision`, to go back to when a mutation could not be written.
        var document: StateDocument?
        /// The state key's revision as last seen in etcd.
        var stateRevision: Int64 = 0
        /// The lease of this node's record.
        var lease: Int64?
        /// The nodes last read.
        var roster = FleetRoster(records: [:])
        /// A change this proxy made by itself (its cause) that is not in etcd yet.
        var ownChangePending: String?
        /// When etcd last answered (monotonic milliseconds); `nil` before it ever did.
        var lastContact: UInt64?
    }

    /// What `cutover_fleet_*` counts.
    struct Counters {
        /// Mutations refused because etcd did not answer.
        var refused = 0
        /// Mutations refused because another change was written first.
        var conflicts = 0
    }

    let cluster: ClusterConfig
    let keys: FleetKeys
    let client: EtcdClient
    let book = Mutex(Book())
    let counters = Mutex(Counters())
    let commits = NSLock()
    /// Where record puts wait their turn, in the order the control queue applied the revisions.
    let records = DispatchQueue(label: "cutover.fleet.records")
    /// Seconds a node record outlives its proxy.
    static let leaseSeconds: Int64 = 5
    /// How long a fleet `switch` waits for every live node to apply it.
    static let applyTimeout: Duration = .seconds(5)

    /// - Important: reads `cluster.tls`'s files; call at start.
    init(cluster: ClusterConfig) throws(TLSError) {
        self.cluster = cluster
        self.keys = cluster.keys
        self.client = try EtcdClient(members: cluster.etcd, tls: cluster.tls, credentials: cluster.credentials)
    }

    /// Records the store's reachability; logs only the changes.
    func markStore(_ store: FleetStore) {
        let previous = book.withLock { book in
            defer {
                book.store = store
                if store == .available { book.lastContact = monotonicMilliseconds() }
            }
            return book.store
        }
        guard previous.name != store.name else { return }
        switch store {
        case .available: Log.info("fleet: etcd reachable again (\(cluster.etcd.map(\.description).joined(separator: ", ")))")
        case .unavailable(let reason): Log.warning("fleet: etcd unreachable, serving the last applied state and refusing changes: \(reason)")
        }
    }

    /// The state document and its revision in etcd; `nil` when the key does not exist yet.
    func readState() throws(EtcdClient.Failure) -> (StateDocument, Int64)? {
        let answer = try client.call("/v3/kv/range", EtcdRangeRequest(key: keys.state), as: EtcdRangeResponse.self)
        guard let kv = answer.kvs?.first else { return nil }
        do {
            return (try StateDocument.decode(kv.valueBytes), kv.revision)
        } catch {
            throw EtcdClient.Failure(reason: "\(keys.state) at revision \(kv.revision) is not a state document: \(error)")
        }
    }

    /// Writes `document` if the state key is still at `basedOn`: the new revision, or the
    /// document and revision that won the race.
    enum Written {
        case written(revision: Int64)
        case raced(StateDocument?, revision: Int64)
    }

    func write(_ document: StateDocument, basedOn: Int64) throws(EtcdClient.Failure) -> Written {
        let answer = try client.call("/v3/kv/txn", EtcdTxnRequest(key: keys.state, basedOn: basedOn, put: document.encoded()), as: EtcdTxnResponse.self)
        if answer.succeeded == true { return .written(revision: answer.header?.revision?.value ?? 0) }
        let kv = answer.responses?.first?.responseRange?.kvs?.first
        return .raced(kv.flatMap { try? StateDocument.decode($0.valueBytes) }, revision: kv?.revision ?? 0)
    }

    /// Puts this node's record under its lease, granting one when there is none. A lease etcd no
    /// longer knows (it expired while etcd was away, or was revoked) is granted anew and the put
    /// retried once, rather than reading as an unreachable store.
    func putRecord(appliedRevision: Int64) throws(EtcdClient.Failure) {
        let record = FleetNodeRecord(node: cluster.node, appliedRevision: appliedRevision, version: CutoverVersion.string)
        let value = Array(JSONCoding.line(record).utf8)
        do {
            try put(value, lease: try heldOrGrantedLease())
        } catch where error.notFound {
            book.withLock { $0.lease = nil }
            try put(value, lease: try heldOrGrantedLease())
        }
    }

    private func put(_ value: [UInt8], lease: Int64) throws(EtcdClient.Failure) {
        _ = try client.call("/v3/kv/put", EtcdPutRequest(key: keys.node(cluster.node), value: value, lease: lease), as: EtcdRangeResponse.self)
    }

    private func heldOrGrantedLease() throws(EtcdClient.Failure) -> Int64 {
        if let held = book.withLock({ $0.lease }) { return held }
        let granted = try client.call("/v3/lease/grant", EtcdLeaseGrantRequest(seconds: Self.leaseSeconds), as: EtcdLease.self)
        guard let id = granted.id?.value, granted.isAlive else { throw EtcdClient.Failure(reason: "lease grant refused") }
        book.withLock { $0.lease = id }
        return id
    }

    /// Renews the lease; false when it had expired (the record is gone and must be put again).
    func keepAlive() throws(EtcdClient.Failure) -> Bool {
        guard let lease = book.withLock({ $0.lease }) else { return false }
        let answer: EtcdStreamed<EtcdLease>
        do {
            answer = try client.call("/v3/lease/keepalive", EtcdLeaseKeepAliveRequest(lease: lease), as: EtcdStreamed<EtcdLease>.self)
        } catch where error.notFound {
            book.withLock { $0.lease = nil }
            return false
        }
        guard answer.result?.isAlive == true else {
            book.withLock { $0.lease = nil }
            return false
        }
        return true
    }

    /// The live nodes' records.
    func readRoster() throws(EtcdClient.Failure) -> FleetRoster {
        let answer = try client.call("/v3/kv/range", EtcdRangeRequest(prefix: keys.nodes), as: EtcdRangeResponse.self)
        var records: [String: FleetNodeRecord] = [:]
        for kv in answer.kvs ?? [] {
            guard keys.nodeName(ofKey: kv.keyText) != nil,
                let record = try? JSONCoding.decoder.decode(FleetNodeRecord.self, from: Data(kv.valueBytes))
            else { continue }
            records[record.node] = record
        }
        let roster = FleetRoster(records: records)
        book.withLock { $0.roster = roster }
        return roster
    }
}
