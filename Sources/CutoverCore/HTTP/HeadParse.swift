/// The outcome of parsing the bytes received so far: not enough yet, or a whole head.
public enum HeadParse<Head> {
    /// The head has not ended yet and no limit is exceeded: read more and parse again from the start.
    case incomplete
    /// A whole head; `headLength` counts the bytes through the final CRLFCRLF (including any leading
    /// empty lines that were skipped), so the body or the next message starts at that offset.
    case complete(Head, headLength: Int)
}

extension HeadParse: Sendable where Head: Sendable {}
extension HeadParse: Equatable where Head: Equatable {}
