import Foundation

/// The one JSON style of everything Cutover writes: admin answers, the state file, the agent's
/// leases and journal. Keys are `snake_case`, sorted, on one line, slashes unescaped.
///
/// Swift properties are camelCase and the key strategies convert them both ways, so a type needs
/// no `CodingKeys` unless a key is not the snake form of its property (`readonly`, not
/// `read_only`: name the property `readonly`). Dictionary keys (profile and endpoint names) are
/// left alone by both strategies. The strict `JSONParser` stays for config files, which need
/// duplicate-key refusal and positions in their errors.
public enum JSONCoding {
    /// A new encoder in the shared style (encoders are not `Sendable`, so each use gets its own).
    public static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    /// A new decoder matching `encoder`.
    public static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }

    /// `value` as one line of JSON; `{}` if it cannot be encoded (only non-finite doubles can fail).
    public static func line<T: Encodable>(_ value: T) -> String {
        guard let data = try? encoder.encode(value) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    /// Decodes `text` (one JSON document) as `T`.
    public static func decode<T: Decodable>(_ type: T.Type, from text: String) throws -> T {
        try decoder.decode(type, from: Data(text.utf8))
    }
}
