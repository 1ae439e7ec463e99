/// The lowest TLS protocol version a listener accepts.
public enum TLSVersion: String, Sendable, Equatable, CaseIterable {
    /// TLS 1.2 (RFC 5246), the default: what every client of the last ten years speaks.
    case v1_2 = "1.2"
    /// TLS 1.3 (RFC 8446) only.
    case v1_3 = "1.3"
}

/// One certificate a TLS listener can present: a PEM chain (leaf first) and its private key.
///
/// Paths are resolved against the config file's folder by the decoder; the files are read by the
/// I/O layer at start and at every reload, never by the core.
public struct CertificateFiles: Sendable, Equatable {
    /// PEM file with the leaf certificate followed by its intermediates.
    public var cert: String
    /// PEM file with the private key of the leaf.
    public var key: String

    public init(cert: String, key: String) {
        self.cert = cert
        self.key = key
    }
}

/// TLS termination on a listener (`listeners[i].tls`).
public struct ListenerTLSConfig: Sendable, Equatable {
    /// Chosen by the client's SNI against each certificate's names; the first is the default.
    public var certificates: [CertificateFiles]
    /// Handshakes offering only older versions are refused.
    public var minVersion: TLSVersion

    public init(certificates: [CertificateFiles], minVersion: TLSVersion = .v1_2) {
        self.certificates = certificates
        self.minVersion = minVersion
    }
}

/// TLS from the proxy to one endpoint (`profiles[i].endpoints[j].tls`); probes use it too.
public struct UpstreamTLSConfig: Sendable, Equatable {
    /// Check the endpoint's certificate chain and name; on unless turned off explicitly.
    public var verify: Bool
    /// PEM bundle of the authorities to trust; the system store when `nil`.
    public var ca: String?
    /// SNI and the name the certificate must carry; the endpoint's host when `nil`.
    public var serverName: String?

    public init(verify: Bool = true, ca: String? = nil, serverName: String? = nil) {
        self.verify = verify
        self.ca = ca
        self.serverName = serverName
    }

    /// The name the endpoint's certificate must carry: `serverName`, else the endpoint's host (sent
    /// as SNI too, unless it is an IP address: SNI carries only names, RFC 6066 §3).
    public func expectedName(endpointHost host: String) -> String {
        serverName ?? host
    }
}
