import Foundation
import Glibc
import Synchronization

/// Keeps N keep-alive connections busy with sequential GETs and records every response:
/// when it started and ended, which backend answered (`X-Backend`) and the status.
final class LoadClient: @unchecked Sendable {  // `records` is guarded by `lock`
    struct Record {
        let started: Date
        let ended: Date
        let status: Int
        let backend: String
        let path: String
    }

    private let lock = NSLock()
    private var records: [Record] = []
    private var errors: [String] = []
    private let stopFlag = Atomic<Bool>(false)
    private let group = DispatchGroup()

    /// Starts `connections` loops on `path` against 127.0.0.1:`port`, sending `Host: host`; with
    /// `rate`, paced to that many requests a second in all (else as fast as answers come).
    func start(port: UInt16, connections: Int, path: String = "/", host: String = "test", rate: Double? = nil) {
        let interval = rate.map { Double(connections) / $0 }
        for _ in 0..<connections {
            group.enter()
            Thread { [self] in
                defer { group.leave() }
                loop(port: port, path: path, host: host, interval: interval)
            }.start()
        }
    }

    /// Sends one request per connection on `path` once (for long requests in flight).
    func startOnce(port: UInt16, connections: Int, path: String) {
        for _ in 0..<connections {
            group.enter()
            Thread { [self] in
                defer { group.leave() }
                once(port: port, path: path)
            }.start()
        }
    }

    func stop() {
        stopFlag.store(true, ordering: .relaxed)
        group.wait()
    }

    var results: [Record] { lock.withLock { records } }
    var failures: [String] { lock.withLock { errors } }

    private func loop(port: UInt16, path: String, host: String, interval: Double? = nil) {
        var connection: RawConnection?
        var next = Date()
        while !stopFlag.load(ordering: .relaxed) {
            if let interval {
                // A fixed schedule, not a sleep after each answer: a slow answer does not lower the rate.
                next = max(next.addingTimeInterval(interval), Date().addingTimeInterval(-interval))
                let wait = next.timeIntervalSinceNow
                if wait > 0 { usleep(useconds_t(wait * 1_000_000)) }
            }
            do {
                if connection == nil { connection = try RawConnection(port: port) }
                if !exchange(connection!, path: path, host: host) { connection = nil }
            } catch {
                fail("connect: \(error)")
                usleep(10_000)
            }
        }
    }

    private func once(port: UInt16, path: String) {
        do {
            _ = exchange(try RawConnection(port: port), path: path)
        } catch {
            fail("connect: \(error)")
        }
    }

    /// One request/response; false when the connection cannot be reused.
    private func exchange(_ connection: RawConnection, path: String, host: String = "test") -> Bool {
        // A proxy that answered twice, or early, would shift every later answer onto the wrong request.
        if let extra = connection.unsolicitedBytes() {
            fail("bytes before the request for \(path) was sent: \(extra.debugDescription)")
            return false
        }
        let started = Date()
        connection.send("GET \(path) HTTP/1.1\r\nHost: \(host)\r\n\r\n")
        let response = connection.readResponse()
        let ended = Date()
        guard let statusLine = response.split(separator: "\r\n").first, statusLine.hasPrefix("HTTP/1.1 "),
              let status = Int(statusLine.split(separator: " ")[1]) else {
            fail("no response for \(path) (got \(response.prefix(80).debugDescription))")
            return false
        }
        let backend = response.split(separator: "\r\n").first { $0.lowercased().hasPrefix("x-backend:") }
            .map { $0.dropFirst("x-backend:".count).trimmingCharacters(in: .whitespaces) } ?? "-"
        lock.withLock { records.append(Record(started: started, ended: ended, status: status, backend: backend, path: path)) }
        return !response.lowercased().contains("connection: close")
    }

    private func fail(_ message: String) {
        lock.withLock { errors.append(message) }
    }
}
