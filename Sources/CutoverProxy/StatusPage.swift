import CutoverCore
import Foundation

/// The admin listener's `/status`: one self-contained HTML page (inline CSS, no scripts, no external
/// assets) that a person reads during an upgrade. It refreshes itself every 2 seconds.
///
/// Every text that comes from config or events is escaped: names are plain by validation, but event
/// causes quote error messages and addresses.
struct StatusPage {
    /// How many recent events the page lists.
    static let eventCount = 15

    let profiles: [ProxyRuntime.ProfileView]
    let endpoints: [ProxyRuntime.EndpointView]
    /// Newest first.
    let events: [RuntimeEvent]
    let stats: [(String, Int)]
    let shuttingDown: Bool
    let generatedAt: Date

    func render() -> String {
        var html = """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8">
            <meta http-equiv="refresh" content="2">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>Cutover status</title>
            <style>\(Self.css)</style>
            </head><body>
            <header><div class="brand">Cutover <span class="version">\(Self.escape(CutoverVersion.string))</span></div>
            <div class="process \(shuttingDown ? "bad" : "good")">\(shuttingDown ? "shutting down" : "running")</div></header>
            <main>
            <section class="totals">\(totalsHTML())</section>

            """
        for profile in profiles { html += profileHTML(profile) }
        html += eventsHTML()
        html += """
            </main>
            <footer>Generated \(Self.escape(Timestamp.format(generatedAt))) · refreshes every 2 s · <a href="/metrics">/metrics</a> · <a href="/health">/health</a></footer>
            </body></html>

            """
        return html
    }

    private func totalsHTML() -> String {
        let values = Dictionary(stats, uniquingKeysWith: { a, _ in a })
        let shown: [(String, String)] = [
            ("uptime_seconds", "uptime"), ("connections_open", "open connections"), ("requests", "requests"),
            ("held_now", "held now"), ("switches", "switches"), ("snapshot_generation", "snapshot"),
        ]
        return shown.map { key, label in
            let value = values[key] ?? 0
            let text = key == "uptime_seconds" ? Self.formatUptime(value) : String(value)
            return "<div class=\"total\"><div class=\"value\">\(Self.escape(text))</div><div class=\"label\">\(label)</div></div>"
        }.joined()
    }

    private func profileHTML(_ profile: ProxyRuntime.ProfileView) -> String {
        let gates = profile.gates.map { "<span class=\"chip gate\">\(Self.escape($0))</span>" }.joined()
        let live = profile.live.isEmpty
            ? "<span class=\"chip bad\">no live endpoint</span>"
            : "<span class=\"chip live\">live: \(Self.escape(profile.live.joined(separator: ", ")))</span>"
        // Always shown: "0 held" during a pause says the pause is holding nothing yet.
        let held = "<span class=\"chip \(profile.held > 0 ? "gate" : "quiet")\">\(profile.held) held</span>"
        var rows = ""
        for view in endpoints where view.profile == profile.name {
            let responses = Dictionary(view.counters.responsesByClass.map { ($0.label, $0.count) }, uniquingKeysWith: { a, _ in a })
            let change = view.lastChange.map { "\(Self.escape($0.state)): \(Self.escape($0.cause))" } ?? "<span class=\"muted\">–</span>"
            rows += """
                <tr class="\(view.live ? "is-live" : "")">
                <td class="name">\(view.live ? "<span class=\"dot\" title=\"live\"></span>" : "<span class=\"dot off\"></span>")\(Self.escape(view.name))</td>
                <td class="mono">\(Self.escape(view.address))</td>
                <td><span class="badge state-\(view.agentDrains ? AdminState.draining.rawValue : view.state.rawValue)">\(Self.escape(view.stateText))</span></td>
                <td><span class="badge health-\(view.health.rawValue)">\(view.health.rawValue)</span></td>
                <td class="num">\(view.priority)</td><td class="num">\(Self.escape(view.weightText))</td>
                <td class="num strong">\(view.inFlight)</td><td class="num">\(view.connections)</td>
                <td class="num">\(view.rateText)</td><td class="num">\(view.p50Text)</td><td class="num">\(view.p99Text)</td>
                <td class="num">\(responses["2xx"] ?? 0)</td><td class="num">\(responses["4xx"] ?? 0)</td><td class="num">\(responses["5xx"] ?? 0)</td>
                <td class="change">\(change)</td>
                </tr>

                """
        }
        return """
            <section class="profile" id="profile-\(Self.escape(profile.name))">
            <h2>\(Self.escape(profile.name)) \(live)\(gates)\(held)</h2>
            <table><thead><tr><th>Endpoint</th><th>Address</th><th>State</th><th>Health</th><th class="num">Prio</th><th class="num">Weight</th>
            <th class="num">In flight</th><th class="num">Conns</th>
            <th class="num" title="answers per second over the last minute">Req/s</th><th class="num" title="over the last minute">p50</th><th class="num" title="over the last minute">p99</th>
            <th class="num">2xx</th><th class="num">4xx</th><th class="num">5xx</th><th>Last health change</th></tr></thead>
            <tbody>
            \(rows)</tbody></table>
            </section>

            """
    }

    private func eventsHTML() -> String {
        let rows = events.map { event in
            let subject = event.endpoint.map { "\(event.profile)/\($0)" } ?? event.profile
            return "<tr><td class=\"mono muted\">\(Self.escape(Timestamp.format(event.time)))</td><td class=\"name\">\(Self.escape(subject))</td>"
                + "<td><span class=\"badge event\">\(Self.escape(event.state))</span></td><td>\(Self.escape(event.cause))</td></tr>"
        }.joined(separator: "\n")
        let body = events.isEmpty ? "<p class=\"muted\">No events yet.</p>"
            : "<table><thead><tr><th>Time (UTC)</th><th>What</th><th>State</th><th>Cause</th></tr></thead><tbody>\n\(rows)\n</tbody></table>"
        return "<section class=\"events\"><h2>Recent events</h2>\n\(body)\n</section>\n"
    }

    /// `3d 4h`, `2h 5m`, `4m 10s`, `12s`.
    static func formatUptime(_ seconds: Int) -> String {
        let (d, h, m, s) = (seconds / 86_400, seconds / 3_600 % 24, seconds / 60 % 60, seconds % 60)
        if d > 0 { return "\(d)d \(h)h" }
        if h > 0 { return "\(h)h \(m)m" }
        if m > 0 { return "\(m)m \(s)s" }
        return "\(s)s"
    }

    /// Text made safe for HTML element content and quoted attribute values.
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }

    static let css = """
        :root{--bg:#f4f6f9;--card:#fff;--ink:#1d2433;--muted:#6b7488;--line:#e3e7ee;--green:#1f9d55;--red:#d64545;--amber:#c98a00;--blue:#2f6fde}
        *{box-sizing:border-box}
        body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
        header{display:flex;justify-content:space-between;align-items:center;padding:14px 28px;background:#151a26;color:#fff}
        .brand{font-size:20px;font-weight:700;letter-spacing:.3px}
        .version{font-size:12px;font-weight:500;color:#9aa4b8;margin-left:6px}
        .process{font-size:12px;font-weight:600;text-transform:uppercase;letter-spacing:.6px;padding:4px 10px;border-radius:999px}
        .process.good{background:#1f9d5533;color:#6ee7a8}.process.bad{background:#d6454533;color:#ff9c9c}
        main{max-width:1180px;margin:0 auto;padding:20px 24px}
        .totals{display:grid;grid-template-columns:repeat(6,1fr);gap:12px;margin-bottom:18px}
        .total{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:10px 14px}
        .total .value{font-size:22px;font-weight:700}.total .label{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.4px}
        section.profile,section.events{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:6px 18px 14px;margin-bottom:18px;box-shadow:0 1px 2px #0000000a}
        h2{font-size:17px;margin:12px 0 10px;display:flex;align-items:center;gap:8px;flex-wrap:wrap}
        table{width:100%;border-collapse:collapse}
        th{text-align:left;font-size:11px;text-transform:uppercase;letter-spacing:.5px;color:var(--muted);font-weight:600;padding:6px 8px;border-bottom:1px solid var(--line)}
        td{padding:8px;border-bottom:1px solid var(--line);vertical-align:middle}
        tr:last-child td{border-bottom:0}
        tr.is-live td{background:#1f9d550d}
        .num{text-align:right;font-variant-numeric:tabular-nums}.strong{font-weight:700}
        .mono{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace;font-size:12.5px}
        .muted{color:var(--muted)}.name{font-weight:600;white-space:nowrap}.change{color:var(--muted);font-size:12.5px}
        .dot{display:inline-block;width:9px;height:9px;border-radius:50%;background:var(--green);margin-right:8px;box-shadow:0 0 0 3px #1f9d5526}
        .dot.off{background:#c5ccd8;box-shadow:none}
        .badge{display:inline-block;font-size:11.5px;font-weight:600;padding:2px 9px;border-radius:999px;background:#eef1f6;color:var(--muted)}
        .state-online{background:#e3f5ea;color:var(--green)}.state-offline{background:#eef1f6;color:var(--muted)}.state-draining{background:#fff3d6;color:var(--amber)}
        .health-up{background:#e3f5ea;color:var(--green)}.health-down{background:#fde8e8;color:var(--red)}.health-unknown{background:#eef1f6;color:var(--muted)}
        .badge.event{background:#e8effc;color:var(--blue)}
        .chip{font-size:12px;font-weight:600;padding:3px 10px;border-radius:999px}
        .chip.live{background:#e3f5ea;color:var(--green)}.chip.bad{background:#fde8e8;color:var(--red)}.chip.gate{background:#fff3d6;color:var(--amber)}.chip.quiet{background:#eef1f6;color:var(--muted)}
        footer{max-width:1180px;margin:0 auto;padding:0 24px 24px;color:var(--muted);font-size:12px}
        footer a{color:var(--blue)}
        """
}
