import XCTest

@testable import CutoverCore

/// The latency histogram's buckets and the Prometheus text writer: pure, no clock, no sockets.
final class MetricsTextTests: XCTestCase {
    func testHistogram_countsEachDurationOnce_andReadsCumulative() {
        let histogram = LatencyHistogram(boundsMilliseconds: [1, 10, 100])
        for milliseconds: UInt64 in [0, 1, 2, 10, 11, 100, 5_000] { histogram.record(milliseconds: milliseconds) }
        let reading = histogram.reading()
        XCTAssertEqual(reading.buckets.map(\.seconds), [0.001, 0.01, 0.1])
        XCTAssertEqual(reading.buckets.map(\.cumulativeCount), [2, 4, 6], "a bound is inclusive: 1 ms is in le=0.001")
        XCTAssertEqual(reading.count, 7)
        XCTAssertEqual(reading.sumSeconds, 5.124, accuracy: 1e-9)
    }

    func testHistogram_recordsFromManyThreadsWithoutLoss() {
        let histogram = LatencyHistogram()
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for i in 0..<1_000 { histogram.record(milliseconds: UInt64(i % 50)) }
        }
        XCTAssertEqual(histogram.reading().count, 8_000)
    }

    func testExposition_writesHelpTypeSamplesAndHistogram() {
        var text = PrometheusText()
        text.family("cutover_requests_total", .counter, help: "Requests.\nSecond line \\ done")
        text.sample("cutover_requests_total", [("profile", "web"), ("class", "2xx")], 3)
        let histogram = LatencyHistogram(boundsMilliseconds: [5, 1_000])
        histogram.record(milliseconds: 7)
        text.family("cutover_request_duration_seconds", .histogram, help: "Durations.")
        text.histogram("cutover_request_duration_seconds", [("endpoint", "blue")], histogram.reading())
        XCTAssertEqual(text.text, """
            # HELP cutover_requests_total Requests.\\nSecond line \\\\ done
            # TYPE cutover_requests_total counter
            cutover_requests_total{profile="web",class="2xx"} 3
            # HELP cutover_request_duration_seconds Durations.
            # TYPE cutover_request_duration_seconds histogram
            cutover_request_duration_seconds_bucket{endpoint="blue",le="0.005"} 0
            cutover_request_duration_seconds_bucket{endpoint="blue",le="1"} 1
            cutover_request_duration_seconds_bucket{endpoint="blue",le="+Inf"} 1
            cutover_request_duration_seconds_sum{endpoint="blue"} 0.007
            cutover_request_duration_seconds_count{endpoint="blue"} 1

            """)
    }

    func testLabelValues_escapeQuoteBackslashAndNewline() {
        XCTAssertEqual(PrometheusText.escapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd")
        XCTAssertEqual(PrometheusText.format(.infinity), "+Inf")
        XCTAssertEqual(PrometheusText.format(.nan), "NaN")
        XCTAssertEqual(PrometheusText.format(2), "2")
        XCTAssertEqual(PrometheusText.format(0.25), "0.25")
    }
}
