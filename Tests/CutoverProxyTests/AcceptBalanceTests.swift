import XCTest

@testable import CutoverProxy

/// Which worker serves a connection a worker accepted (`Listener.server`).
final class AcceptBalanceTests: XCTestCase {
    private func server(_ loads: [Int], acceptedBy acceptor: Int) -> Int {
        Listener.server(acceptedBy: acceptor, of: loads.count) { loads[$0] }
    }

    func testTheAcceptorKeepsItUnlessAnotherServesFewer() {
        XCTAssertEqual(server([3, 3], acceptedBy: 1), 1, "a tie stays where it was accepted: no queue hop")
        XCTAssertEqual(server([3, 2], acceptedBy: 0), 1)
        XCTAssertEqual(server([2, 3], acceptedBy: 1), 0)
        XCTAssertEqual(server([0], acceptedBy: 0), 0)
    }

    func testOfSeveralLighterOnes_theFirstWithFewestServes() {
        XCTAssertEqual(server([5, 4, 2, 2, 3], acceptedBy: 0), 2)
        XCTAssertEqual(server([5, 4, 2, 2, 3], acceptedBy: 3), 3, "the acceptor is among the fewest")
        XCTAssertEqual(server([5, 1, 0, 0], acceptedBy: 1), 2)
    }

    /// A burst accepted by one worker, each connection counted as it is assigned, ends split evenly.
    func testABurstAcceptedByOneWorker_endsSplitEvenly() {
        var loads = [0, 0, 0]
        for _ in 0..<31 { loads[server(loads, acceptedBy: 0)] += 1 }
        XCTAssertEqual(loads, [11, 10, 10])
    }
}
