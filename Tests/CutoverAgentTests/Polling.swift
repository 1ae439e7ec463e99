import Foundation

/// Polls `condition` every 20 ms until it holds or `timeout` passes; false on timeout. The same
/// helper as `Tests/IntegrationTests/Support/CutoverBinary.swift` (test targets share no code).
@discardableResult
func waitUntil(timeout: TimeInterval = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(20_000)
    }
    return try condition()
}
