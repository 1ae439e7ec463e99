// swift-tools-version:6.0
import PackageDescription

// Release builds of the hot path skip Swift's run-time exclusivity checks: every connection's state is
// confined to one serial queue, and the checks cost about 2 % of a proxied request's CPU
// (docs/performance-history.md, "Fewer reference counts"). Debug builds, which `swift test` runs,
// keep them, so the suite still traps any overlapping access.
let hotPathSettings: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "Cutover",
    products: [
        .executable(name: "cutover", targets: ["cutover"])
    ],
    targets: [
        // Glibc is built without _GNU_SOURCE: accept4, splice and pipe2 need a tiny C shim.
        .target(name: "CShims"),
        // libpq as a system library (pkg-config libpq; apt libpq-dev).
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        // OpenSSL 3 as a system library (pkg-config openssl; apt libssl-dev): TLS on listeners and to endpoints.
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        // Pure logic: config, profiles, routing snapshots, HTTP framing, command grammar. No I/O.
        .target(name: "CutoverCore", swiftSettings: hotPathSettings),
        // The control-plane transport both processes share (Dispatch + Glibc + Foundation, nothing
        // of ours): the admin line protocol's server and client, the durable-file writer. The agent
        // reaches the proxy only through this and Core's answer types, never by linking the proxy.
        .target(name: "CutoverControl"),
        // Dispatch + Glibc: sockets, listeners, HTTP sessions, tunnels, state file, signals.
        .target(name: "CutoverProxy", dependencies: ["CutoverCore", "CutoverControl", "CShims", "COpenSSL"], swiftSettings: hotPathSettings),
        // The companion agent: database and flag drivers, journal, runbooks. Not the proxy (.ci/check-layering).
        .target(name: "CutoverAgent", dependencies: ["CutoverCore", "CutoverControl", "CLibPQ"]),
        .executableTarget(name: "cutover", dependencies: ["CutoverCore", "CutoverControl", "CutoverProxy", "CutoverAgent"]),
        // libFuzzer targets for the parsers (Tests/Fuzz/run.sh); a plain build is a corpus replayer.
        .executableTarget(name: "CutoverFuzz", dependencies: ["CutoverCore"], path: "Tests/Fuzz/CutoverFuzz"),
        .testTarget(name: "CutoverCoreTests", dependencies: ["CutoverCore"]),
        .testTarget(name: "CutoverProxyTests", dependencies: ["CutoverProxy", "CutoverCore"]),
        .testTarget(name: "CutoverAgentTests", dependencies: ["CutoverAgent", "CutoverCore", "CutoverControl"]),
        .testTarget(name: "IntegrationTests", dependencies: ["cutover", "CutoverCore"]),
    ]
)
