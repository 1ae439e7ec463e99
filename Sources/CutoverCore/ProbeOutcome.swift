/// The result of one active health probe, with the words an operator reads in `show events`.
///
/// Every text starts with `probe:` so that a health change can be told apart from a passive one
/// (`passive: …`) or an operator's (`set endpoint …`) at a glance.
public enum ProbeOutcome: Sendable, Equatable {
    /// The endpoint answered as expected (`probe: HTTP 200 on /healthz`).
    case success(String)
    /// The endpoint failed the check (`probe: HTTP 500 on /healthz`, `probe: connect refused`).
    case failure(String)

    /// The operator's text of this result.
    public var text: String {
        switch self {
        case .success(let text): return text
        case .failure(let text): return text
        }
    }

    /// Whether the probe passed.
    public var passed: Bool {
        switch self {
        case .success: return true
        case .failure: return false
        }
    }

    // MARK: - The words of each result

    /// A TCP connect that completed: the whole of a `tcp` probe.
    public static func connected(to address: HostPort) -> ProbeOutcome {
        .success("probe: connected to \(address)")
    }

    /// A connect the endpoint refused or the network could not deliver; `reason` is a short phrase
    /// (`refused`, `reset`, `host unreachable`).
    public static func connectFailed(_ reason: String) -> ProbeOutcome {
        .failure("probe: connect \(reason)")
    }

    /// Nothing completed within the probe's timeout; `during` says what was pending, if anything
    /// (`on /healthz`, `connecting`).
    public static func timedOut(after timeout: Duration, _ during: String? = nil) -> ProbeOutcome {
        .failure("probe: timeout after \(DurationText.format(timeout))" + (during.map { " \($0)" } ?? ""))
    }

    /// An HTTP status outside the expected ranges (or inside them: then a success).
    public static func httpStatus(_ status: Int, path: String, expected: Bool) -> ProbeOutcome {
        let text = "probe: HTTP \(status) on \(path)"
        return expected ? .success(text) : .failure(text)
    }

    /// An expected status whose body lacks the configured substring.
    public static func bodyLacks(_ substring: String, path: String) -> ProbeOutcome {
        .failure("probe: body lacks \"\(substring)\" on \(path)")
    }

    /// An answer that is not HTTP/1.x, or not one the strict parser accepts.
    public static func badResponse(path: String, reason: String) -> ProbeOutcome {
        .failure("probe: bad answer on \(path): \(reason)")
    }

    /// The endpoint closed or reset the connection before a complete answer.
    public static func closedEarly(path: String, reset: Bool) -> ProbeOutcome {
        .failure("probe: connection \(reset ? "reset" : "closed") before an answer on \(path)")
    }

    /// A `command` probe that ran to its end: exit 0 is healthy.
    public static func commandExited(_ status: Int32) -> ProbeOutcome {
        let text = "probe: command exited \(status)"
        return status == 0 ? .success(text) : .failure(text)
    }

    /// A `command` probe killed by a signal it did not get from us.
    public static func commandKilled(signal: Int32) -> ProbeOutcome {
        .failure("probe: command killed by signal \(signal)")
    }

    /// A `command` probe still running at the timeout: it was killed.
    public static func commandTimedOut(after timeout: Duration) -> ProbeOutcome {
        .failure("probe: command timeout after \(DurationText.format(timeout)), killed")
    }

    /// A `command` probe that could not be started (missing executable, no permission).
    public static func commandNotStarted(_ executable: String, reason: String) -> ProbeOutcome {
        .failure("probe: cannot run \(executable): \(reason)")
    }
}
