import CutoverCore
import XCTest

/// Issue 17: an agent probe's line, read as HAProxy's agent-check reads it, and what it does to routing.
final class AgentReplyTests: XCTestCase {
    private func parse(_ line: String) -> AgentReply? { try? AgentReply.parse(line).get() }

    func testWords_inAnyOrderAndCase_withAMessage() {
        XCTAssertEqual(parse("up"), AgentReply(health: .up))
        XCTAssertEqual(parse("UP 50%"), AgentReply(health: .up, weightPercent: 50))
        XCTAssertEqual(parse("drain,  down\r"), AgentReply(health: .down, admin: .drain))
        XCTAssertEqual(parse("maint # disk swap "), AgentReply(admin: .maint, message: "disk swap"))
        XCTAssertEqual(parse("stopped"), AgentReply(health: .down))
        XCTAssertEqual(parse("ready\t0%"), AgentReply(admin: .ready, weightPercent: 0))
    }

    func testNonsense_isAFailedProbe_namingTheWord() {
        XCTAssertEqual(try? AgentReply.parse("").get(), nil)
        XCTAssertEqual(AgentReply.parse("  # only a comment").failureValue, .empty)
        XCTAssertEqual(AgentReply.parse("up sideways").failureValue, .unknownWord("sideways"))
        XCTAssertEqual(AgentReply.parse("150%").failureValue, .weightOutOfRange("150%"))
        for word in ["%", "-5%", "+5%", "5.5%"] { XCTAssertNotNil(AgentReply.parse(word).failureValue, word) }
        XCTAssertEqual(AgentReplyError.unknownWord("x").outcome, .failure("probe: agent answered \"x\", which is not up, down, ready, drain, maint or NN%"))
    }

    func testOutcome_downAndMaintFail_restPasses() {
        XCTAssertEqual(AgentReply(admin: .maint, message: "disk swap").outcome, .failure("probe: agent says maint (disk swap)"))
        XCTAssertEqual(AgentReply(health: .down).outcome, .failure("probe: agent says down"))
        XCTAssertEqual(AgentReply(admin: .drain).outcome, .success("probe: agent says drain"))
        XCTAssertEqual(AgentReply(health: .up, weightPercent: 50).outcome, .success("probe: agent says up 50%"))
    }

    func testShare_drainZero_percentScales_readyRestores_othersKeep() {
        XCTAssertEqual(AgentReply(admin: .drain).share(after: nil), 0)
        XCTAssertEqual(AgentReply(admin: .drain, weightPercent: 50).share(after: nil), 0, "drain wins")
        XCTAssertEqual(AgentReply(weightPercent: 50).share(after: 0), 50)
        XCTAssertEqual(AgentReply(weightPercent: 100).share(after: 50), nil)
        XCTAssertEqual(AgentReply(admin: .ready).share(after: 0), nil)
        XCTAssertEqual(AgentReply(admin: .ready, weightPercent: 25).share(after: 0), 25)
        XCTAssertEqual(AgentReply(health: .up).share(after: 0), 0, "up says nothing of the drain")
        XCTAssertEqual(AgentReply(admin: .maint).share(after: 30), 30)
    }

    func testSchedulingWeight_isTheWeightScaledByTheShare() {
        var endpoint = EndpointRuntime(admin: .online, health: .up, priority: 1, weight: 1)
        XCTAssertEqual(endpoint.schedulingWeight, 100)
        endpoint.agentShare = 50
        XCTAssertEqual(endpoint.schedulingWeight, 50)
        XCTAssertEqual(WeightedSchedule.build(weights: [100, 50]), [0, 1, 0], "half of weight 1 is one turn in three")
        endpoint.agentShare = 0
        XCTAssertEqual(endpoint.schedulingWeight, 0)
    }
}

extension Result {
    fileprivate var failureValue: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
