import Foundation

/// The messages of etcd's v3 JSON gateway that the fleet uses, spelled as etcd spells them
/// (`mod_revision`, `TTL`, `ID`): these are etcd's keys, not ours, so they go through
/// `EtcdJSON` (no key strategy) rather than `JSONCoding`. Keys and values travel as base64;
/// 64-bit numbers as decimal strings, and etcd leaves out fields at their zero value.
public enum EtcdJSON {
    /// An encoder that writes the keys as the `CodingKeys` spell them.
    public static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    /// The matching decoder.
    public static var decoder: JSONDecoder { JSONDecoder() }

    /// `bytes` in base64, as etcd wants keys and values.
    public static func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }
    /// `bytes` in base64.
    public static func base64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }
    /// The bytes of a base64 field; `nil` when it is not base64.
    public static func bytes(base64 text: String) -> [UInt8]? { Data(base64Encoded: text).map(Array.init) }
}

/// An `Int64` that etcd writes as a decimal string (and that may come as a number).
public struct EtcdInt: Codable, Sendable, Equatable, Hashable {
    /// The value.
    public var value: Int64

    public init(_ value: Int64) { self.value = value }

    /// Reads `"42"` or `42`.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let number = try? container.decode(Int64.self) {
            value = number
            return
        }
        let text = try container.decode(String.self)
        guard let number = Int64(text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "\"\(text)\" is not a 64-bit integer")
        }
        value = number
    }

    /// Writes `"42"`, as etcd does.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(String(value))
    }
}

/// `ResponseHeader`: the store's revision when the request was served.
public struct EtcdHeader: Codable, Sendable, Equatable {
    /// The store's revision (the other fields, member and cluster ids, are unsigned 64-bit and unused).
    public var revision: EtcdInt?
}

/// `mvccpb.KeyValue`.
public struct EtcdKeyValue: Codable, Sendable, Equatable {
    /// The key, base64.
    public var key: String
    /// The value, base64 (absent when empty).
    public var value: String?
    /// The revision of the last change to this key.
    public var modRevision: EtcdInt?
    /// The revision that created it.
    public var createRevision: EtcdInt?
    /// The lease the key is attached to (absent when none).
    public var lease: EtcdInt?

    private enum CodingKeys: String, CodingKey {
        case key, value, lease
        case modRevision = "mod_revision"
        case createRevision = "create_revision"
    }

    /// The key as text.
    public var keyText: String { String(decoding: EtcdJSON.bytes(base64: key) ?? [], as: UTF8.self) }
    /// The value's bytes.
    public var valueBytes: [UInt8] { value.flatMap(EtcdJSON.bytes(base64:)) ?? [] }
    /// The `mod_revision`, 0 when absent.
    public var revision: Int64 { modRevision?.value ?? 0 }
}

/// `RangeRequest`: one key, or every key in `[key, range_end)`.
public struct EtcdRangeRequest: Codable, Sendable, Equatable {
    /// The key, base64.
    public var key: String
    /// The end of the key range (exclusive), base64; absent for one key.
    public var rangeEnd: String?

    private enum CodingKeys: String, CodingKey {
        case key
        case rangeEnd = "range_end"
    }

    /// The request for one key.
    public init(key: String) {
        self.key = EtcdJSON.base64(key)
    }

    /// The request for every key under `prefix`.
    public init(prefix: String) {
        self.key = EtcdJSON.base64(prefix)
        self.rangeEnd = EtcdJSON.base64(FleetKeys.rangeEnd(ofPrefix: Array(prefix.utf8)))
    }
}

/// `RangeResponse`.
public struct EtcdRangeResponse: Codable, Sendable, Equatable {
    /// The store revision it was served at.
    public var header: EtcdHeader?
    /// The keys found (absent when none).
    public var kvs: [EtcdKeyValue]?
}

/// `PutRequest`.
public struct EtcdPutRequest: Codable, Sendable, Equatable {
    /// The key, base64.
    public var key: String
    /// The value, base64.
    public var value: String
    /// The lease to attach the key to; absent for none.
    public var lease: EtcdInt?

    public init(key: String, value: [UInt8], lease: Int64? = nil) {
        self.key = EtcdJSON.base64(key)
        self.value = EtcdJSON.base64(value)
        self.lease = lease.map(EtcdInt.init)
    }
}

/// `TxnRequest` with the one shape the fleet needs: compare a key's `mod_revision`, put on
/// success, read the key back on failure.
public struct EtcdTxnRequest: Codable, Sendable, Equatable {
    /// `Compare`: `target` is `MOD`, `result` `EQUAL`.
    public struct Compare: Codable, Sendable, Equatable {
        /// `MOD`: compare the key's `mod_revision`.
        public var target: String
        /// `EQUAL`.
        public var result: String
        /// The key, base64.
        public var key: String
        /// The revision the key must still be at (0: the key must not exist).
        public var modRevision: EtcdInt

        private enum CodingKeys: String, CodingKey {
            case target, result, key
            case modRevision = "mod_revision"
        }
    }

    /// `RequestOp`: one of its fields is set.
    public struct Operation: Codable, Sendable, Equatable {
        /// A put.
        public var requestPut: EtcdPutRequest?
        /// A read.
        public var requestRange: EtcdRangeRequest?

        private enum CodingKeys: String, CodingKey {
            case requestPut = "request_put"
            case requestRange = "request_range"
        }
    }

    /// What must hold for `success` to run.
    public var compare: [Compare]
    /// Run when every compare holds.
    public var success: [Operation]
    /// Run otherwise.
    public var failure: [Operation]

    /// Put `value` at `key` if the key's `mod_revision` is still `basedOn` (0: the key does not
    /// exist yet); otherwise read the key, so the caller learns what it raced with.
    public init(key: String, basedOn: Int64, put value: [UInt8]) {
        compare = [Compare(target: "MOD", result: "EQUAL", key: EtcdJSON.base64(key), modRevision: EtcdInt(basedOn))]
        success = [Operation(requestPut: EtcdPutRequest(key: key, value: value))]
        failure = [Operation(requestRange: EtcdRangeRequest(key: key))]
    }
}

/// `TxnResponse`.
public struct EtcdTxnResponse: Codable, Sendable, Equatable {
    /// `ResponseOp`: the range read on failure is the one field used.
    public struct Response: Codable, Sendable, Equatable {
        /// The answer of a read.
        public var responseRange: EtcdRangeResponse?

        private enum CodingKeys: String, CodingKey {
            case responseRange = "response_range"
        }
    }

    /// The store revision it was served at.
    public var header: EtcdHeader?
    /// Whether the compare held (etcd leaves `false` out).
    public var succeeded: Bool?
    /// One per operation run.
    public var responses: [Response]?
}

/// `AuthenticateRequest` (`/v3/auth/authenticate`): an etcd user's name and password.
public struct EtcdAuthenticateRequest: Codable, Sendable, Equatable {
    public var name: String
    public var password: String

    public init(name: String, password: String) {
        self.name = name
        self.password = password
    }
}

/// `AuthenticateResponse`: the token to send as the `Authorization` header of later calls (a
/// simple token is known only to the member that gave it, and expires).
public struct EtcdAuthenticateResponse: Codable, Sendable, Equatable {
    public var token: String?
}

/// `LeaseGrantRequest`.
public struct EtcdLeaseGrantRequest: Codable, Sendable, Equatable {
    /// Seconds.
    public var ttl: EtcdInt

    public init(seconds: Int64) { ttl = EtcdInt(seconds) }

    private enum CodingKeys: String, CodingKey {
        case ttl = "TTL"
    }
}

/// `LeaseGrantResponse` and, inside `result`, `LeaseKeepAliveResponse`: a lease and its TTL.
/// A keep-alive of a lease that has expired comes back without a TTL.
public struct EtcdLease: Codable, Sendable, Equatable {
    /// The lease ID.
    public var id: EtcdInt?
    /// Seconds left; absent (0) when the lease does not exist.
    public var ttl: EtcdInt?

    private enum CodingKeys: String, CodingKey {
        case id = "ID"
        case ttl = "TTL"
    }

    /// Whether the lease is alive (a positive TTL).
    public var isAlive: Bool { (ttl?.value ?? 0) > 0 && id != nil }
}

/// `LeaseKeepAliveRequest`.
public struct EtcdLeaseKeepAliveRequest: Codable, Sendable, Equatable {
    /// The lease ID.
    public var id: EtcdInt

    public init(lease: Int64) { id = EtcdInt(lease) }

    private enum CodingKeys: String, CodingKey {
        case id = "ID"
    }
}

/// `WatchRequest` with a `create_request` for every key under a prefix, from `start_revision`.
public struct EtcdWatchRequest: Codable, Sendable, Equatable {
    /// `WatchCreateRequest`.
    public struct Create: Codable, Sendable, Equatable {
        /// The key, base64.
        public var key: String
        /// The end of the key range (exclusive), base64; absent for one key.
        public var rangeEnd: String?
        /// The first revision to report.
        public var startRevision: EtcdInt?

        private enum CodingKeys: String, CodingKey {
            case key
            case rangeEnd = "range_end"
            case startRevision = "start_revision"
        }
    }

    /// The watch to create.
    public var createRequest: Create

    private enum CodingKeys: String, CodingKey {
        case createRequest = "create_request"
    }

    /// Watches `key` from `startRevision`.
    public init(key: String, startRevision: Int64) {
        createRequest = Create(key: EtcdJSON.base64(key), rangeEnd: nil, startRevision: EtcdInt(startRevision))
    }
}

/// One message of a streamed answer (`/v3/watch`, `/v3/lease/keepalive`): the payload in `result`,
/// or a gRPC error in `error`.
public struct EtcdStreamed<Result: Codable & Sendable & Equatable>: Codable, Sendable, Equatable {
    /// The message.
    public var result: Result?
    /// The error that ended the stream.
    public var error: EtcdError?
}

/// `WatchResponse`.
public struct EtcdWatchResponse: Codable, Sendable, Equatable {
    /// `mvccpb.Event`: a put (no `type`) or a `DELETE`.
    public struct Event: Codable, Sendable, Equatable {
        /// `DELETE`, or absent for a put.
        public var type: String?
        /// The key after the event.
        public var kv: EtcdKeyValue?
    }

    /// The store revision it was served at.
    public var header: EtcdHeader?
    /// Set on the first message, when the watch was created.
    public var created: Bool?
    /// Set when etcd ended the watch.
    public var canceled: Bool?
    /// Set when the watch asked for a revision that was compacted away.
    public var compactRevision: EtcdInt?
    /// The changes, in revision order.
    public var events: [Event]?

    private enum CodingKeys: String, CodingKey {
        case header, created, canceled, events
        case compactRevision = "compact_revision"
    }
}

/// The gateway's error body: `{"error": "...", "code": 14, "message": "..."}`.
public struct EtcdError: Codable, Sendable, Equatable {
    /// The gRPC error text.
    public var error: String?
    /// The gRPC status code (14: unavailable).
    public var code: Int?
    /// The error message.
    public var message: String?
}
