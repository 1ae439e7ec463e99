import CutoverControl
import CutoverCore
import Foundation

/// Persists `RuntimeState` so that a restart keeps switches, pauses and gates.
///
/// Writes go to a temporary file that is fsync'd and renamed over the old one, so a crash leaves
/// either the old or the new state, never a torn file. Health is not persisted: probes re-learn it.
/// The format is `StateDocument` (Core).
struct StateFile {
    let path: String

    /// Why the state file could not be read or written.
    struct Failure: Error, CustomStringConvertible {
        let path: String
        let reason: String
        var description: String { "state file \(path): \(reason)" }
    }

    func write(_ state: RuntimeState) throws {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty { try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        do {
            try DurableFile.write(StateDocument(state).encoded(), to: path)
        } catch {
            throw Failure(path: error.path, reason: error.reason)
        }
    }

    /// The saved state, or `nil` when there is no file (start from config).
    func read() throws -> RuntimeState? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else { throw Failure(path: path, reason: "unreadable") }
        do {
            return try StateDocument.decode(Array(data)).runtimeState
        } catch {
            throw Failure(
                path: path,
                reason: "\(error); the proxy does not start on a state file it cannot trust (it would silently undo a switch or a gate): "
                    + "correct that value, or delete the file to start from the config's endpoint states and gates")
        }
    }
}
