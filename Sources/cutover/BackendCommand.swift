import CutoverCore
import CutoverProxy
import Dispatch
import Foundation

/// `cutover backend`: a sample upstream that answers with its name, for trying a switch by hand.
enum BackendCommand {
    static let subcommand = Subcommand(
        name: "backend",
        summary: "run a sample HTTP backend that answers with its name (for demos and tests)",
        help: """
            Usage: cutover backend --listen HOST:PORT --name NAME [--fail-ratio R] [--delay D]

            A small HTTP/1.1 server to put behind Cutover when trying it out. It prints
            "listening on HOST:PORT" once ready and runs until killed. Every answer has the header
            X-Backend: NAME. Routes:
              /                      200, body "NAME"
              /healthz               200 (or the status set by POST /control/health?status=N)
              /slow?ms=N             answers after N ms (default 2000)
              /echo                  the request body back
              /bytes?n=N             N bytes, streamed (N up to 64 GiB, else 400);  /chunked?n=N&chunks=K  N bytes in K chunks
              /status?code=N         that status;  /headers  the request head as received
              Upgrade: echo          101, then every byte is echoed back
              /fault/cut-mid-body    Content-Length 100000 (length=N), 1000 bytes (sent=N), closed
              /fault/cut-mid-chunk   chunked: one whole chunk, 100 bytes of the next, closed
              /fault/malformed       a status line that is not HTTP, then silence
              /fault/hang            no answer; the connection held until the peer closes it
              /fault/reset-after-head  as cut-mid-body, but pause_ms=N (100) and then a reset
              POST /control/faults?fail_ratio=R&delay_ms=N   change the faults below at run time

            Options:
              --listen HOST:PORT     address to listen on (port 0 = any free port)
              --name NAME            the name to answer with (default: backend)
              --fail-ratio R         answer 500 to this share of requests (0 to 1; /healthz and
                                     /control/* are exempt, so probes stay healthy)
              --delay D              answer every request this late (e.g. 300ms; same exemption)
            """,
        run: run)

    static func run(_ words: [String]) throws -> Int32 {
        let args = try Arguments(words, valued: ["--listen", "--name", "--fail-ratio", "--delay"])
        try args.rejectUnknown(flags: [])
        guard let listen = args.value("--listen") else { throw UsageError("--listen HOST:PORT is required") }
        let address = try ProxyCommand.hostPort(listen, option: "--listen")
        var failRatio = 0.0
        if let text = args.value("--fail-ratio") {
            guard let ratio = Double(text), ratio >= 0, ratio <= 1 else { throw UsageError("--fail-ratio: '\(text)' is not a number from 0 to 1") }
            failRatio = ratio
        }
        var delay = Duration.zero
        if let text = args.value("--delay") {
            guard let parsed = DurationText.parse(text) else { throw UsageError("--delay: '\(text)' is not a duration such as 300ms") }
            delay = parsed
        }
        let backend = try SampleBackend(name: args.value("--name") ?? "backend", address: address, failRatio: failRatio, delay: delay)
        print("listening on \(address.host):\(backend.port)")
        fflush(nil)
        withExtendedLifetime(backend) { dispatchMain() }
    }
}
