/// Smooth weighted round robin (the order nginx uses): spreads a heavier endpoint's turns evenly
/// instead of in bursts, so a 95/5 canary sees its 5 % as a trickle, not as a block of 5 in a row.
public enum WeightedSchedule {
    /// The order in which candidates with these weights are picked over one full cycle.
    ///
    /// The cycle length is the sum of the weights divided by their greatest common divisor.
    /// Zero weights never appear. Returns `[]` when every weight is zero.
    public static func build(weights: [Int]) -> [Int] {
        let positive = weights.filter { $0 > 0 }
        guard !positive.isEmpty else { return [] }
        let divisor = positive.reduce(positive[0]) { gcd($0, $1) }
        let scaled = weights.map { max(0, $0) / divisor }
        let total = scaled.reduce(0, +)
        var current = Array(repeating: 0, count: scaled.count)
        var order: [Int] = []
        order.reserveCapacity(total)
        for _ in 0..<total {
            var best = -1
            for i in scaled.indices where scaled[i] > 0 {
                current[i] += scaled[i]
                if best < 0 || current[i] > current[best] { best = i }
            }
            current[best] -= total
            order.append(best)
        }
        return order
    }

    private static func gcd(_ a: Int, _ b: Int) -> Int {
        b == 0 ? a : gcd(b, a % b)
    }
}
