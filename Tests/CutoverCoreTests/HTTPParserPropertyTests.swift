import CutoverCore
import XCTest

/// Properties of the request parser over many generated inputs (valid requests and mutations of
/// them), with a fixed seed so a failure names an input that reproduces. The libFuzzer target
/// `request-head` (Tests/Fuzz) checks the same properties on inputs it evolves.
final class HTTPParserPropertyTests: XCTestCase {
    /// SplitMix64: small, fast, and the same sequence on every machine.
    private struct Generator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
        mutating func pick<T>(_ choices: [T]) -> T { choices[below(choices.count)] }
    }

    private static let methods = ["GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE", "PATCH", "CONNECT", "M-SEARCH", "get"]
    private static let targets = ["/", "/a/b?c=d&e", "*", "http://internal.admin/secret", "example.com:443", "/%7e?x=%20", "/ä"]
    private static let fields = [
        ("Host", "example.com"), ("Host", "a:8080"), ("Content-Length", "5"), ("Content-Length", "3, 3"),
        ("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "gzip, chunked"), ("Connection", "keep-alive, Upgrade"),
        ("Upgrade", "websocket"), ("Expect", "100-continue"), ("X-Empty", ""), ("X-Tab", "a\tb"), ("Cookie", "a=b; c=d"),
        ("X-Obs", "caf\u{e9}"), ("X-Forwarded-For", "10.0.0.1"), ("TE", "trailers"),
    ]
    /// Bytes that matter to HTTP framing, for mutations.
    private static let interesting: [UInt8] = Array(" \t\r\n:,;\"\\\0\u{7f}0aZ-".utf8) + [0x80, 0xC3, 0xFF]

    private func generate(_ random: inout Generator) -> [UInt8] {
        var text = "\(random.pick(Self.methods)) \(random.pick(Self.targets)) \(random.pick(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/1.2", "HTTP/2"]))\r\n"
        for _ in 0..<random.below(6) {
            let (name, value) = random.pick(Self.fields)
            text += "\(name): \(value)\r\n"
        }
        if random.below(4) > 0 { text += "Host: h\r\n" }
        text += "\r\n"
        var bytes = Array(text.utf8)
        // Mutate half of the inputs a little: insert, delete or replace a byte anywhere.
        for _ in 0..<(random.below(2) == 0 ? 0 : 1 + random.below(3)) where !bytes.isEmpty {
            let at = random.below(bytes.count)
            switch random.below(3) {
            case 0: bytes.insert(random.pick(Self.interesting), at: at)
            case 1: bytes.remove(at: at)
            default: bytes[at] = random.pick(Self.interesting)
            }
        }
        return bytes
    }

    /// Every accepted head, serialised as the proxy would forward it and parsed again, is the same
    /// message with a valid framing; and no prefix of it is mistaken for a complete head.
    func testAcceptedRequests_reparseToTheSameMessage() throws {
        var random = Generator(state: 20_261_202)
        var accepted = 0
        for index in 0..<20_000 {
            let bytes = generate(&random)
            guard case .complete(let head, let headLength)? = try? parseRequest(bytes) else { continue }
            accepted += 1
            let input = String(decoding: bytes, as: UTF8.self).debugDescription
            XCTAssertNoThrow(try head.bodyFraming(), "#\(index) \(input)")
            var again: [UInt8] = []
            head.write(into: &again)
            guard case .complete(let second, let secondLength)? = try? parseRequest(again) else {
                XCTFail("#\(index) \(input): serialised as \(String(decoding: again, as: UTF8.self).debugDescription), which does not parse")
                continue
            }
            XCTAssertEqual(second, head, "#\(index) \(input)")
            XCTAssertEqual(secondLength, again.count, "#\(index) \(input)")
            if index % 10 == 0 {
                for cut in stride(from: 0, to: headLength, by: 3) {
                    if case .complete? = try? parseRequest(Array(bytes[..<cut])) {
                        XCTFail("#\(index) \(input): the first \(cut) of \(headLength) head bytes parsed as complete")
                    }
                }
            }
        }
        // The generator must reach the accepting paths, or the property says nothing.
        XCTAssertGreaterThan(accepted, 2_000, "only \(accepted) of 20000 generated requests were accepted")
    }
}
