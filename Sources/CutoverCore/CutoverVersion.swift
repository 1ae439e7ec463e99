/// The version printed by `cutover --version` and sent in `Via` headers.
public enum CutoverVersion {
    public static let string = "0.1.0"
}
