//! The timeline as one self-contained HTML page: inline CSS, one inline SVG, a tiny inline
//! script that counts the bars the browser drew; every untrusted string is escaped.

use std::fmt::Write as _;

use super::{layout, Row, SegmentKind};
use crate::{format_duration_ms, summarize, utc_timestamp, StepState};
use cairn::store::LoadedRun;
use cairn::workflow::RunStatus;

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const LABEL_W: f64 = 300.0;
const CHART_W: f64 = 760.0;
const ROW_H: f64 = 30.0;
const BAR_H: f64 = 16.0;
const AXIS_H: f64 = 28.0;
/// Instant steps (inline steps take ~0 ms) still get a visible bar.
const MIN_BAR_W: f64 = 4.0;

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2330;background:#fff}\
h1{font-size:20px;margin:0 0 4px}h2{font-size:15px;margin:16px 0 4px}code,pre{font:12px/1.4 ui-monospace,monospace}\
pre{background:#f4f6f9;padding:8px;border-radius:4px;max-height:240px;overflow:auto;margin:4px 0 12px}\
.summary td{padding:2px 12px 2px 0;vertical-align:top}.status{padding:1px 8px;border-radius:10px;color:#fff;font-weight:600}\
.status.completed{background:#2e9d5b}.status.failed,.status.cancelled{background:#d64541}.status.running{background:#4a90d9}.status.continuedAsNew{background:#8e6cc4}\
.attempt.completed{fill:#2e9d5b;background:#2e9d5b}.attempt.failed{fill:#d64541;background:#d64541}.attempt.pending{fill:#9aa4b1;background:#9aa4b1}.late{fill-opacity:.45;stroke:#333;stroke-dasharray:3 2}\
.wait.backoff{fill:url(#hatch);background:repeating-linear-gradient(45deg,#f0b429 0 3px,#fff4d6 3px 6px)}\
.wait.sleep{fill:#4a90d9;fill-opacity:.45;background:#a5c8ee}.wait.signal{fill:#8e6cc4;fill-opacity:.45;background:#c7b6e2}\
.marker.signal{stroke:#8e6cc4;stroke-width:1.5;stroke-dasharray:3 3}.marker.end{stroke:#1d2330;stroke-width:1}\
.legend{display:flex;flex-wrap:wrap;gap:16px;margin:12px 0}.legend span.swatch{display:inline-block;width:22px;height:12px;border-radius:2px;margin-right:6px;vertical-align:middle}\
.legend span.line{display:inline-block;width:0;height:14px;border-left:2px dashed #8e6cc4;margin:0 8px;vertical-align:middle}\
svg text{font:12px system-ui,sans-serif;fill:#1d2330}svg .tick{stroke:#e3e7ee}svg .row:nth-child(odd) .band{fill:#f7f9fb}\
table.steps{border-collapse:collapse;margin-top:16px}table.steps th,table.steps td{border-bottom:1px solid #e3e7ee;padding:4px 10px;text-align:left;vertical-align:top}";

/// Counts the bars the browser laid out (non-empty boxes) and records it on `<body>`.
const SCRIPT: &str = "(function(){var b=document.querySelectorAll('svg .bar'),n=0;\
for(var i=0;i<b.length;i++){var r=b[i].getBoundingClientRect();if(r.width>0&&r.height>0)n++;}\
document.body.setAttribute('data-bars-drawn',String(n));document.body.setAttribute('data-bars-total',String(b.length));})();";

/// A round tick step (1, 2 or 5 × 10^k ms) giving at most 8 ticks over `span_ms`.
pub(super) fn tick_step(span_ms: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            if span_ms / (step * m) <= 8 {
                return step * m;
            }
        }
        step = step.saturating_mul(10);
    }
}

fn pretty(value: &serde_json::Value) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    if text.len() <= 2000 {
        text
    } else {
        summarize(value, 400)
    }
}

/// The timeline as one self-contained HTML page.
pub fn render_html(run: &LoadedRun) -> String {
    let timeline = layout(run);
    let r = &run.run;
    let span = timeline.end_ms.saturating_sub(timeline.start_ms).max(1);
    let x = |t: u64| LABEL_W + (t.saturating_sub(timeline.start_ms) as f64 / span as f64) * CHART_W;
    let height = AXIS_H + ROW_H * timeline.rows.len().max(1) as f64 + 8.0;
    let width = LABEL_W + CHART_W + 20.0;
    let mut h = String::new();
    let title = format!("{} {} — cairn run timeline", r.workflow, r.run_id);
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>",
        escape(&title)
    );
    let _ = write!(
        h,
        "<h1>{} <span class=\"status {status}\">{status}</span></h1><table class=\"summary\">\
         <tr><td>run</td><td><code>{}</code></td></tr><tr><td>created</td><td>{}</td></tr>\
         <tr><td>last change</td><td>{} (+{})</td></tr><tr><td>history</td><td>{} events, version {}</td></tr>",
        escape(&r.workflow),
        escape(&r.run_id),
        utc_timestamp(r.created_at_ms),
        utc_timestamp(r.updated_at_ms),
        format_duration_ms(r.updated_at_ms.saturating_sub(r.created_at_ms)),
        r.history_len,
        r.version,
        status = escape(r.status.as_str()),
    );
    if let Some(error) = &r.error {
        let _ = write!(
            h,
            "<tr><td>error</td><td><strong>{}</strong></td></tr>",
            escape(&error.to_string())
        );
    }
    if let Some(problem) = &r.last_error {
        let _ = write!(
            h,
            "<tr><td>engine problem</td><td>{}</td></tr>",
            escape(problem)
        );
    }
    h.push_str("</table>");
    h.push_str(
        "<div class=\"legend\"><span><span class=\"swatch attempt completed\"></span>attempt completed</span>\
         <span><span class=\"swatch attempt failed\"></span>attempt failed</span>\
         <span><span class=\"swatch attempt pending\"></span>in progress</span>\
         <span><span class=\"swatch wait backoff\"></span>retry backoff</span>\
         <span><span class=\"swatch wait sleep\"></span>sleep</span>\
         <span><span class=\"swatch wait signal\"></span>waiting for a signal</span>\
         <span><span class=\"line\"></span>signal received</span></div>",
    );
    let _ = write!(
        h,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">\
         <defs><pattern id=\"hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">\
         <rect width=\"6\" height=\"6\" fill=\"#fff4d6\"/><rect width=\"3\" height=\"6\" fill=\"#f0b429\"/></pattern></defs>"
    );
    let step = tick_step(span);
    let mut t = 0;
    while t <= span {
        let tx = x(timeline.start_ms + t);
        let _ = write!(
            h,
            "<line class=\"tick\" x1=\"{tx:.1}\" x2=\"{tx:.1}\" y1=\"{}\" y2=\"{height}\"/><text x=\"{tx:.1}\" y=\"16\" text-anchor=\"middle\">{}</text>",
            AXIS_H - 6.0,
            if t == 0 { "0".to_owned() } else { format!("+{}", format_duration_ms(t)) }
        );
        t += step;
    }
    h.push_str("<g class=\"rows\">");
    for (i, row) in timeline.rows.iter().enumerate() {
        let top = AXIS_H + ROW_H * i as f64;
        let label = row_label(row);
        let _ = write!(
            h,
            "<g class=\"row\" data-seq=\"{}\"><rect class=\"band\" x=\"0\" y=\"{top}\" width=\"{width}\" height=\"{ROW_H}\" fill=\"none\"/>\
             <text x=\"6\" y=\"{:.1}\">{}</text>",
            row.seq,
            top + ROW_H / 2.0 + 4.0,
            escape(&label)
        );
        for seg in &row.segments {
            let (class, min_w) = match seg.kind {
                SegmentKind::Attempt => (
                    format!(
                        "bar attempt {}",
                        match seg.state {
                            StepState::Completed => "completed",
                            StepState::Failed => "failed",
                            StepState::Pending => "pending",
                        }
                    ),
                    MIN_BAR_W,
                ),
                SegmentKind::Backoff => ("bar wait backoff".to_owned(), 1.0),
                SegmentKind::Sleep => ("bar wait sleep".to_owned(), 2.0),
                SegmentKind::SignalWait => ("bar wait signal".to_owned(), 2.0),
                SegmentKind::LateResult => (
                    format!(
                        "bar late attempt {}",
                        match seg.state {
                            StepState::Failed => "failed",
                            _ => "completed",
                        }
                    ),
                    MIN_BAR_W,
                ),
            };
            let (x0, x1) = (x(seg.start_ms), x(seg.end_ms));
            let w = (x1 - x0).max(min_w);
            let attempt = if seg.attempt > 0 {
                format!(" data-attempt=\"{}\"", seg.attempt)
            } else {
                String::new()
            };
            let tip = format!(
                "{}{}: +{} → +{} ({}) {}",
                row.name,
                if seg.attempt > 0 {
                    format!(" attempt {}", seg.attempt)
                } else {
                    String::new()
                },
                format_duration_ms(seg.start_ms.saturating_sub(timeline.start_ms)),
                format_duration_ms(seg.end_ms.saturating_sub(timeline.start_ms)),
                format_duration_ms(seg.end_ms.saturating_sub(seg.start_ms)),
                seg.detail
            );
            let _ = write!(
                h,
                "<rect class=\"{class}\" data-seq=\"{}\"{attempt} x=\"{x0:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{BAR_H}\" rx=\"3\"><title>{}</title></rect>",
                row.seq,
                top + (ROW_H - BAR_H) / 2.0,
                escape(&tip)
            );
        }
        h.push_str("</g>");
    }
    h.push_str("</g>");
    for (name, at) in &timeline.signals {
        let sx = x(*at);
        let _ = write!(
            h,
            "<line class=\"marker signal\" x1=\"{sx:.1}\" x2=\"{sx:.1}\" y1=\"{AXIS_H}\" y2=\"{height}\"><title>signal {} at +{}</title></line>",
            escape(name),
            format_duration_ms(at.saturating_sub(timeline.start_ms))
        );
    }
    if r.status != RunStatus::Running {
        let ex = x(r.updated_at_ms);
        let _ = write!(h, "<line class=\"marker end\" x1=\"{ex:.1}\" x2=\"{ex:.1}\" y1=\"{AXIS_H}\" y2=\"{height}\"><title>run {}</title></line>", escape(r.status.as_str()));
    }
    h.push_str("</svg>");
    steps_table(&mut h, run);
    let _ = write!(h, "<h2>input</h2><pre>{}</pre>", escape(&pretty(&r.input)));
    if let Some(output) = &r.output {
        let _ = write!(h, "<h2>output</h2><pre>{}</pre>", escape(&pretty(output)));
    }
    let _ = writeln!(h, "<script>{SCRIPT}</script></body></html>");
    h
}

/// `#2 remote payments.charge-card`, `#3 sleep`, `#4 wait for signal approval`.
fn row_label(row: &Row) -> String {
    match (row.kind, &row.group) {
        ("sleep", _) => format!("#{} sleep", row.seq),
        ("signal", _) => format!("#{} wait for signal {}", row.seq, row.name),
        (_, Some(group)) if *group != row.name => {
            format!("#{} {} {} ({group})", row.seq, row.kind, row.name)
        }
        _ => format!("#{} {} {}", row.seq, row.kind, row.name),
    }
}

fn steps_table(h: &mut String, run: &LoadedRun) {
    let start = run.run.created_at_ms;
    h.push_str("<table class=\"steps\"><tr><th>seq</th><th>kind</th><th>name</th><th>group</th><th>attempts</th><th>start</th><th>duration</th><th>result</th></tr>");
    for line in crate::table_lines(run) {
        let result = match &line.result {
            Some(result) => format!("{} {result}", line.state),
            None => line.state.clone(),
        };
        let cells = [
            line.kind.to_owned(),
            line.name.clone(),
            line.group.clone().unwrap_or_else(|| "-".into()),
            line.attempts
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
            format!(
                "+{}",
                format_duration_ms(line.start_ms.saturating_sub(start))
            ),
            line.duration_ms()
                .map(format_duration_ms)
                .unwrap_or_else(|| "-".into()),
            result,
        ];
        h.push_str(&table_row(line.seq, &cells));
    }
    h.push_str("</table>");
}

fn table_row(seq: u64, cells: &[String]) -> String {
    let mut row = format!("<tr data-seq=\"{seq}\"><td>{seq}</td>");
    for cell in cells {
        let _ = write!(row, "<td>{}</td>", escape(cell));
    }
    row.push_str("</tr>");
    row
}
