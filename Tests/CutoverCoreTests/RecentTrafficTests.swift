import CutoverCore
import XCTest

/// Issue 17: an endpoint's last minute (requests per second, p50/p99) from counter samples, without clocks.
final class RecentTrafficTests: XCTestCase {
    private let bounds: [UInt64] = [1, 5, 10, 25, 50]

    private func sample(answers: Int, cumulative: [Int]) -> GuardSample {
        GuardSample(answers: answers, status5xx: 0, connectFailures: 0, boundsMilliseconds: bounds, cumulativeLatency: cumulative,
                    timed: answers)
    }

    private func at(_ ms: UInt64) -> MonotonicInstant { MonotonicInstant(milliseconds: ms) }

    func testRing_keepsTheLastSevenSamples_andMeasuresFromTheOldest() {
        var ring = CounterRing()
        XCTAssertNil(ring.traffic(current: sample(answers: 5, cumulative: [5, 5, 5, 5, 5]), now: at(0)), "no sample yet")
        for tick in 0..<10 { ring.record(sample(answers: tick * 100, cumulative: Array(repeating: tick * 100, count: 5)), at: at(UInt64(tick) * 10_000)) }
        XCTAssertEqual(ring.entries.count, CounterRing.capacity)
        XCTAssertEqual(ring.oldest?.at, at(30_000))
        // 60 s after the oldest kept sample (300 answers), 900 answers: 600 in 60 s.
        let traffic = ring.traffic(current: sample(answers: 900, cumulative: Array(repeating: 900, count: 5)), now: at(90_000))
        XCTAssertEqual(traffic?.requests, 600)
        XCTAssertEqual(traffic?.span, .seconds(60))
        XCTAssertEqual(traffic?.requestsPerSecond, 10)
    }

    func testRate_overLessThanASecond_countsASecond() {
        let traffic = RecentTraffic(from: sample(answers: 0, cumulative: [0, 0, 0, 0, 0]), to: sample(answers: 30, cumulative: [30, 30, 30, 30, 30]), span: .milliseconds(20))
        XCTAssertEqual(traffic.requestsPerSecond, 30)
    }

    func testPercentiles_interpolateInsideTheirBucket() {
        // 100 answers: 95 at most 1 ms, 5 between 25 and 50 ms.
        let start = sample(answers: 0, cumulative: [0, 0, 0, 0, 0])
        let end = sample(answers: 100, cumulative: [95, 95, 95, 95, 100])
        let traffic = RecentTraffic(from: start, to: end, span: .seconds(10))
        XCTAssertEqual(traffic.p50Milliseconds ?? 0, 50.0 / 95.0, accuracy: 0.001)  // rank 50 of 95 in [0, 1]
        XCTAssertEqual(traffic.p99Milliseconds ?? 0, 25 + 25 * 4.0 / 5.0, accuracy: 0.001)  // rank 99: the 4th of 5 in (25, 50]
        XCTAssertEqual(GuardFigures(from: start, to: end).p99, GuardFigures.P99(lower: .milliseconds(25), upper: .milliseconds(50)))
    }

    func testPercentiles_pastTheLastBound_areTheLastBound_andAbsentWithNothingTimed() {
        let start = sample(answers: 0, cumulative: [0, 0, 0, 0, 0])
        let slow = RecentTraffic(from: start, to: sample(answers: 10, cumulative: [0, 0, 0, 0, 0]), span: .seconds(10))
        XCTAssertEqual(slow.p50Milliseconds, 50)
        XCTAssertEqual(slow.p99Milliseconds, 50)
        XCTAssertEqual(GuardFigures(from: start, to: sample(answers: 10, cumulative: [0, 0, 0, 0, 0])).p99?.upper, nil)
        let idle = RecentTraffic(from: start, to: start, span: .seconds(10))
        XCTAssertNil(idle.p50Milliseconds)
        XCTAssertNil(idle.p99Milliseconds)
        XCTAssertEqual(idle.requestsPerSecond, 0)
    }

    func testEndpointStatus_writesRate1m_andReadsItBack() throws {
        let status = EndpointStatus(profile: "web", name: "blue", address: "127.0.0.1:1", state: "online", health: "up", priority: 1, weight: 1,
                                    live: true, inFlight: 0, connections: 1, rate1m: 12.5, p50Ms: 0.5, p99Ms: 4.2)
        let line = JSONCoding.line(status)
        for key in [#""rate_1m":12.5"#, #""p50_ms":0.5"#, #""p99_ms":4.2"#] { XCTAssertTrue(line.contains(key), line) }
        XCTAssertEqual(try JSONCoding.decode(EndpointStatus.self, from: line), status)
        XCTAssertFalse(JSONCoding.line(EndpointStatus(profile: "web", name: "b", address: "a:1", state: "online", health: "up", priority: 1, weight: 1,
                                                      live: true, inFlight: 0, connections: 0)).contains("rate"), "absent before the first sample")
    }
}
