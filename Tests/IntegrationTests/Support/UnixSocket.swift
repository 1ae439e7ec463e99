import Foundation
import Glibc
import XCTest

/// A Unix socket of `type` (`SOCK_STREAM`, `SOCK_DGRAM`) bound at `path`, for tests that play the
/// other end of one: a silent proxy socket, systemd's notify socket.
func bindUnixSocket(_ path: String, type: Int32) throws -> Int32 {
    let fd = socket(AF_UNIX, type | Int32(SOCK_CLOEXEC.rawValue), 0)
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        raw.copyBytes(from: path.utf8)
        raw[path.utf8.count] = 0
    }
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    guard fd >= 0, bound == 0 else {
        let reason = String(cString: strerror(errno))
        if fd >= 0 { close(fd) }
        throw FixtureError("bind \(path): \(reason)")
    }
    return fd
}

/// A test case with the two sample backends most scenarios need, `blue` and `green`, in a
/// temporary directory that also holds the admin socket; all stopped and removed at the end.
class BlueGreenTestCase: XCTestCase {
    var dir: TemporaryDirectory!
    var blue: Backend!
    var green: Backend!
    var socket: String { dir.path("admin.sock") }

    override func setUpWithError() throws {
        dir = try TemporaryDirectory()
        blue = try Backend(name: "blue", directory: dir)
        green = try Backend(name: "green", directory: dir)
    }

    override func tearDown() {
        blue?.stop()
        green?.stop()
        dir = nil
    }
}
