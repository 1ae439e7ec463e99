// swift-tools-version:6.0
import PackageDescription

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
        // Pure logic: config, profiles, routing snapshots, HTTP framing, command grammar. No I/O.
        .target(name: "CutoverCore"),
        // Dispatch + Glibc: sockets, listeners, HTTP sessions, tunnels, admin socket, state file.
        .target(name: "CutoverProxy", dependencies: ["CutoverCore", "CShims"]),
        // The companion agent: database and flag drivers, journal, runbooks.
        .target(name: "CutoverAgent", dependencies: ["CutoverCore", "CutoverProxy", "CLibPQ"]),
        .executableTarget(name: "cutover", dependencies: ["CutoverCore", "CutoverProxy", "CutoverAgent"]),
        .testTarget(name: "CutoverCoreTests", dependencies: ["CutoverCore"]),
        .testTarget(name: "CutoverProxyTests", dependencies: ["CutoverProxy", "CutoverCore"]),
        .testTarget(name: "CutoverAgentTests", dependencies: ["CutoverAgent", "CutoverCore", "CutoverProxy"]),
        .testTarget(name: "IntegrationTests", dependencies: ["cutover", "CutoverCore"]),
    ]
)
