import Foundation

/// Throwaway ECDSA P-256 certificates made with the `openssl` command in a test's temp dir: one
/// CA, and leaf certificates it signs for the names asked.
struct TestCertificates {
    let directory: TemporaryDirectory
    /// The CA certificate clients trust (`curl --cacert`, an endpoint's `tls.ca`).
    let caPath: String

    init(directory: TemporaryDirectory) throws {
        self.directory = directory
        caPath = directory.path("ca.pem")
        try Self.openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                          "-keyout", directory.path("ca.key"), "-out", caPath, "-days", "2", "-subj", "/CN=Cutover Test CA"])
    }

    /// A leaf for `names` (subjectAltName DNS entries; the first is also the CN), signed by the CA;
    /// `organization` tells two certificates for the same names apart. Returns (cert, key) paths.
    @discardableResult
    func leaf(_ file: String, names: [String], organization: String = "first") throws -> (cert: String, key: String) {
        let key = directory.path("\(file).key")
        let cert = directory.path("\(file).pem")
        let request = directory.path("\(file).csr")
        let extensions = try directory.write("\(file).ext", "subjectAltName=" + names.map { "DNS:\($0)" }.joined(separator: ",") + "\n")
        try Self.openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", request,
                          "-subj", "/CN=\(names[0])/O=\(organization)"])
        try Self.openssl(["x509", "-req", "-in", request, "-CA", caPath, "-CAkey", directory.path("ca.key"), "-CAcreateserial",
                          "-out", cert, "-days", "2", "-extfile", extensions])
        return (cert, key)
    }

    /// A private key that belongs to no certificate.
    func strayKey(_ file: String) throws -> String {
        let key = directory.path("\(file).key")
        try Self.openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key])
        return key
    }

    private static func openssl(_ arguments: [String]) throws {
        let result = try run("/usr/bin/openssl", arguments)
        guard result.status == 0 else { throw FixtureError("openssl \(arguments.first ?? ""): \(result.stderr)") }
    }
}

/// `openssl s_client` against 127.0.0.1:`port`, sending `input` and returning everything it printed.
func tlsClient(port: UInt16, serverName: String? = nil, extra: [String] = [], input: String = "", timeout: TimeInterval = 10) throws -> (status: Int32, output: String) {
    var arguments = ["s_client", "-connect", "127.0.0.1:\(port)"]
    arguments += serverName.map { ["-servername", $0] } ?? ["-noservername"]
    arguments += extra
    let result = try run("/usr/bin/openssl", arguments, input: input, timeout: timeout)
    return (result.status, result.stdout + result.stderr)
}
