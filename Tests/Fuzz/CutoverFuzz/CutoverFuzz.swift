import CutoverCore
import Foundation

/// libFuzzer targets for the parsers that read bytes from the network and from operators' files.
/// `Tests/Fuzz/run.sh` builds this with `-sanitize=fuzzer,address -DLIBFUZZER` and runs each
/// target for a bounded time; a plain build is a replayer that runs the same checks over files, so
/// a crash's input can be re-run (and a regression test written) without the fuzzer.
///
/// Every target states a property, not only "does not crash": a request head that parses has a
/// valid framing and parses back to itself from its own serialisation; the chunked scanner gives
/// the same answer however the body is split; a config or runbook either loads or says why.
enum FuzzTarget: String, CaseIterable {
    case requestHead = "request-head"
    case responseHead = "response-head"
    case chunkedBody = "chunked-body"
    case config
    case runbook

    func run(_ bytes: [UInt8]) {
        switch self {
        case .requestHead: Self.requestHead(bytes)
        case .responseHead: Self.responseHead(bytes)
        case .chunkedBody: Self.chunkedBody(bytes)
        case .config: _ = try? ConfigLoader.parse(bytes, file: "fuzz.json")
        case .runbook: _ = try? Runbook.load(bytes, file: "fuzz.json", baseDirectory: "/nonexistent", settings: [])
        }
    }

    static func requestHead(_ bytes: [UInt8]) {
        let parsed = bytes.withUnsafeBytes { try? HTTPParser.parseRequestHead($0, limits: HTTPHeadLimits()) }
        guard case .complete(let head, let headLength)? = parsed else { return }
        precondition(headLength > 0 && headLength <= bytes.count, "head length \(headLength) outside the \(bytes.count) bytes")
        precondition((try? head.bodyFraming()) != nil, "a complete head has a valid framing (documented)")
        // Differential: what the proxy would forward reads back as the same message.
        var again: [UInt8] = []
        head.write(into: &again)
        let reparsed = again.withUnsafeBytes { try? HTTPParser.parseRequestHead($0, limits: HTTPHeadLimits()) }
        guard case .complete(let second, let secondLength)? = reparsed else {
            preconditionFailure("the serialised head does not parse: \(String(decoding: again, as: UTF8.self).debugDescription)")
        }
        precondition(second == head && secondLength == again.count, "re-parse differs: \(head) vs \(second)")
    }

    static func responseHead(_ bytes: [UInt8]) {
        let parsed = bytes.withUnsafeBytes { try? HTTPParser.parseResponseHead($0, limits: HTTPHeadLimits()) }
        guard case .complete(let head, let headLength)? = parsed else { return }
        precondition(headLength > 0 && headLength <= bytes.count)
        for method in ["GET", "HEAD", "CONNECT"] { _ = try? head.bodyFraming(requestMethod: method) }
        var again: [UInt8] = []
        head.write(into: &again)
        let reparsed = again.withUnsafeBytes { try? HTTPParser.parseResponseHead($0, limits: HTTPHeadLimits()) }
        guard case .complete(let second, _)? = reparsed else {
            preconditionFailure("the serialised response head does not parse: \(String(decoding: again, as: UTF8.self).debugDescription)")
        }
        precondition(second == head, "re-parse differs: \(head) vs \(second)")
    }

    /// The first byte picks a split size: scanning in pieces must agree with scanning at once.
    static func chunkedBody(_ bytes: [UInt8]) {
        guard let first = bytes.first else { return }
        let body = Array(bytes.dropFirst())
        let whole = scan(body, pieceSize: max(1, body.count))
        let pieces = scan(body, pieceSize: Int(first % 17) + 1)
        precondition(whole == pieces, "split scan differs: \(whole) vs \(pieces)")
    }

    /// (bytes consumed, finished, failed) after feeding `body` in pieces; a failure counts no bytes
    /// (pieces before the bad one were consumed, so the count depends on the split).
    private static func scan(_ body: [UInt8], pieceSize: Int) -> [Int] {
        var scanner = ChunkedBodyScanner()
        var consumed = 0
        var offset = 0
        while offset < body.count {
            let end = min(body.count, offset + pieceSize)
            let result = body[offset..<end].withUnsafeBytes { try? scanner.scan($0) }
            guard let (used, finished) = result else { return [0, 0, 1] }
            precondition(used <= end - offset)
            consumed += used
            if finished { return [consumed, 1, 0] }
            precondition(used == end - offset, "an unfinished body consumes every byte it is given")
            offset = end
        }
        return [consumed, 0, 0]
    }

    /// The target a run exercises: `CUTOVER_FUZZ_TARGET` (libFuzzer owns the arguments).
    static let selected: FuzzTarget = {
        let name = ProcessInfo.processInfo.environment["CUTOVER_FUZZ_TARGET"] ?? ""
        guard let target = FuzzTarget(rawValue: name) else {
            fatalError("set CUTOVER_FUZZ_TARGET to one of: \(allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return target
    }()
}

#if LIBFUZZER
    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzzOneInput(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
        FuzzTarget.selected.run(start.map { Array(UnsafeBufferPointer(start: $0, count: count)) } ?? [])
        return 0
    }
#else
    /// Replays files (or every file of the folders given) through the selected target.
    @main
    enum CorpusReplay {
        static func main() throws {
            var count = 0
            for path in CommandLine.arguments.dropFirst() {
                var isDirectory: ObjCBool = false
                _ = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
                let files = isDirectory.boolValue ? try FileManager.default.contentsOfDirectory(atPath: path).map { "\(path)/\($0)" } : [path]
                for file in files {
                    guard let data = FileManager.default.contents(atPath: file) else { continue }
                    FuzzTarget.selected.run(Array(data))
                    count += 1
                }
            }
            print("replayed \(count) inputs through \(FuzzTarget.selected.rawValue): no property failed")
        }
    }
#endif
