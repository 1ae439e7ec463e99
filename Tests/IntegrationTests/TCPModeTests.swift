import Foundation
import Glibc
import XCTest

/// TCP mode end to end: a `"mode": "tcp"` listener tunnelling raw bytes to one endpoint.
final class TCPModeTests: XCTestCase {
    private var directory: TemporaryDirectory!
    private var upstream: TestUpstream?
    private var rig: ProxyRig?

    override func setUpWithError() throws {
        directory = try TemporaryDirectory()
    }

    override func tearDown() {
        rig?.stop()
        upstream?.stop()
        rig = nil
        upstream = nil
        directory = nil
    }

    /// An echo server that, once the client's end of stream arrives, still sends a farewell and
    /// only then closes: what it takes to see a half-close carried through.
    private func startEchoWithFarewell() throws -> ProxyRig {
        let echo = try TestUpstream { fd in
            while let bytes = Blocking.read(fd) {
                guard Blocking.write(fd, bytes) else { return }
            }
            Blocking.write(fd, Array("bye after your EOF\n".utf8))
        }
        upstream = echo
        let started = try ProxyRig(directory: directory, endpoints: [.init(name: "echo", address: echo.address)], mode: "tcp")
        rig = started
        return started
    }

    /// Bytes echo through the tunnel; our half-close reaches the upstream, whose reply still arrives.
    func testTCPEcho_propagatesHalfCloseAndKeepsOtherDirectionOpen() throws {
        let rig = try startEchoWithFarewell()
        let connection = try rig.connect(readTimeout: 5)
        let reader = ResponseReader(connection)
        connection.send("hello tunnel\n")
        XCTAssertEqual(reader.read(until: "hello tunnel\n"), "hello tunnel\n")
        connection.shutdownWrite()
        let end = reader.readToEnd()
        XCTAssertEqual(end.text, "bye after your EOF\n", "the upstream never saw our end of stream, or its answer was lost")
        XCTAssertTrue(end.closed, "the tunnel did not close after both sides ended")
        XCTAssertTrue(waitUntil(timeout: 5) { (try? rig.endpoint("echo")["connections"] as? Int) == 0 }, "upstream connection left open")
    }

    /// A mebibyte sent while reading the echo concurrently comes back intact (backpressure both ways).
    func testTCPEcho_carriesOneMiBBothWays() throws {
        let rig = try startEchoWithFarewell()
        let connection = try rig.connect(readTimeout: 10)
        let block = (0..<1_048_576).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 9) }
        // The descriptor outlives the writer: `connection` is held until the echo has ended.
        let fd = connection.fd
        let writer = Thread {
            Blocking.write(fd, block)
            shutdown(fd, Int32(SHUT_WR))
        }
        writer.start()
        let reader = ResponseReader(connection)
        let end = reader.readToEnd()
        XCTAssertTrue(end.closed)
        let farewell = Array("bye after your EOF\n".utf8)
        XCTAssertEqual(end.bytes.count, block.count + farewell.count)
        XCTAssertTrue(end.bytes == block + farewell, "the echo differs from what was sent")
    }

    /// Small round trips are copied and bulk is spliced: bytes stay in order across every switch
    /// between the two, in both directions (a small echo after each bulk one, then bulk again).
    func testTCPEcho_smallAndBulkInTurn_comeBackInOrder() throws {
        let rig = try startEchoWithFarewell()
        let connection = try rig.connect(readTimeout: 10)
        let reader = ResponseReader(connection)
        let fd = connection.fd
        for round in 0..<3 {
            let small = Array("round \(round)\n".utf8)
            let bulk = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ round) }
            connection.send(String(decoding: small, as: UTF8.self))
            XCTAssertEqual(reader.read(until: "round \(round)\n"), "round \(round)\n")
            let writer = Thread { Blocking.write(fd, bulk + small) }
            writer.start()
            let echoed = reader.read(count: bulk.count + small.count)
            XCTAssertTrue(echoed == bulk + small, "round \(round): the echo differs from what was sent (\(echoed.count) bytes)")
        }
    }

    /// The sample backend's `Upgrade: echo` works over a plain TCP tunnel too (HTTP bytes untouched).
    func testTCPTunnel_carriesHTTPUpgradeEchoUntouched() throws {
        let blue = try Backend(name: "blue", directory: directory)
        defer { blue.stop() }
        let rig = try ProxyRig(directory: directory, endpoints: [.init(name: "blue", address: blue.address)], mode: "tcp")
        self.rig = rig
        let connection = try rig.connect(readTimeout: 5)
        let reader = ResponseReader(connection)
        connection.send("GET / HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        let switched = try XCTUnwrap(reader.next())
        XCTAssertEqual(switched.status, 101)
        XCTAssertNil(switched.header("Via"), "a TCP tunnel must not touch HTTP heads")
        connection.send("raw bytes\n")
        XCTAssertEqual(reader.read(until: "raw bytes\n"), "raw bytes\n")
        connection.shutdownWrite()
        XCTAssertTrue(reader.readToEnd().closed)
    }

    /// The upstream's half-close reaches the client, and the client can still send afterwards.
    func testTCPUpstreamHalfClose_reachesClientAndClientCanStillSend() throws {
        let recorder = Recorder()
        let server = try TestUpstream { fd in
            Blocking.write(fd, Array("greeting\n".utf8))
            shutdown(fd, Int32(SHUT_WR))
            var received: [UInt8] = []
            while let bytes = Blocking.read(fd) { received += bytes }
            recorder.append(String(decoding: received, as: UTF8.self))
        }
        upstream = server
        let rig = try ProxyRig(directory: directory, endpoints: [.init(name: "greeter", address: server.address)], mode: "tcp")
        self.rig = rig
        let connection = try rig.connect(readTimeout: 5)
        let reader = ResponseReader(connection)
        let end = reader.readToEnd()
        XCTAssertEqual(end.text, "greeting\n")
        XCTAssertTrue(end.closed, "the upstream's end of stream did not reach the client")
        connection.send("after your EOF\n")
        connection.shutdownWrite()
        XCTAssertTrue(waitUntil(timeout: 5) { recorder.all == ["after your EOF\n"] }, "\(recorder.all)")
    }

    /// A tunnel with no traffic either way is closed after the idle timeout.
    func testTCPIdleTunnel_isClosedAfterIdleTimeout() throws {
        let echo = try TestUpstream { fd in
            while let bytes = Blocking.read(fd) {
                guard Blocking.write(fd, bytes) else { return }
            }
        }
        upstream = echo
        let rig = try ProxyRig(directory: directory, endpoints: [.init(name: "echo", address: echo.address)], mode: "tcp",
                               settings: [#""timeouts": { "idle": "500ms" }"#])
        self.rig = rig
        let connection = try rig.connect(readTimeout: 4)
        let reader = ResponseReader(connection)
        connection.send("x")
        XCTAssertEqual(reader.read(until: "x"), "x")
        let started = Date()
        XCTAssertTrue(reader.readToEnd().closed, "idle tunnel left open")
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertGreaterThanOrEqual(elapsed, 0.3)
        XCTAssertLessThan(elapsed, 2.5)
        XCTAssertTrue(waitUntil(timeout: 3) { (try? rig.endpoint("echo")["connections"] as? Int) == 0 })
    }

    /// A tunnel whose endpoint refuses the connection closes the client cleanly and leaks nothing.
    func testTCPToDeadEndpoint_closesClientCleanly() throws {
        let rig = try ProxyRig(directory: directory, endpoints: [.init(name: "gone", address: "127.0.0.1:\(TestUpstream.closedPort())")], mode: "tcp")
        self.rig = rig
        let started = Date()
        let connection = try rig.connect(readTimeout: 5)
        let end = ResponseReader(connection).readToEnd()
        XCTAssertEqual(end.text, "")
        XCTAssertTrue(end.closed, "the client was left hanging")
        XCTAssertLessThan(Date().timeIntervalSince(started), 3)
        XCTAssertTrue(waitUntil(timeout: 5) { (try? rig.stats()["connections_open"] as? Int) == 0 }, "client connection still counted")
        XCTAssertEqual(try rig.endpoint("gone")["connections"] as? Int, 0)
        XCTAssertEqual(try rig.endpoint("gone")["in_flight"] as? Int, 0)
    }
}
