//! Charts drawn on the server as inline SVG (no charting script from elsewhere; only
//! presentation attributes, which the page's Content-Security-Policy allows).

use std::fmt::Write;

/// Line colours, one per series in turn.
pub const PALETTE: [&str; 8] = [
    "#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#64748b",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One line per series over the same days; `first_day` and `last_day` label the axis ends,
/// `title` is the chart's accessible name. Empty when there is nothing to draw.
pub fn daily_lines(
    series: &[(String, Vec<i64>)],
    first_day: &str,
    last_day: &str,
    title: &str,
) -> String {
    let days = series.iter().map(|s| s.1.len()).max().unwrap_or(0);
    if days == 0 {
        return String::new();
    }
    let (w, h, left, bottom, top) = (720.0_f64, 220.0_f64, 36.0_f64, 24.0_f64, 10.0_f64);
    let max = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let x = |i: usize| left + (w - left - 8.0) * i as f64 / (days.saturating_sub(1).max(1)) as f64;
    let y = |v: i64| top + (h - top - bottom) * (1.0 - v as f64 / max as f64);
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\" class=\"chart\">",
        escape(title)
    );
    // Axes and the top value.
    let _ = write!(
        out,
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#cbd2dc\"/>\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"#cbd2dc\"/>\
         <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\" fill=\"#667085\">{max}</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\" fill=\"#667085\">0</text>\
         <text x=\"{left}\" y=\"{}\" font-size=\"11\" fill=\"#667085\">{}</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\" fill=\"#667085\">{}</text>",
        h - bottom,
        w - 8.0,
        h - bottom,
        h - bottom,
        left - 4.0,
        top + 10.0,
        left - 4.0,
        h - bottom,
        h - 6.0,
        escape(first_day),
        w - 8.0,
        h - 6.0,
        escape(last_day),
    );
    for (k, (name, values)) in series.iter().enumerate() {
        let colour = PALETTE[k % PALETTE.len()];
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
            .collect();
        let total: i64 = values.iter().sum();
        let _ = write!(
            out,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"><title>{}: {total}</title></polyline>",
            points.join(" "),
            escape(name)
        );
    }
    out.push_str("</svg>");
    out
}

/// A period's use (billing): the running total of `daily` over the days so far (`elapsed`), a
/// dashed line on to `forecast` at the period's end, and the limit as a red line when there is
/// one; one bar per day so far beneath, on the same scale as the daily peak. `first_day` and
/// `last_day` label the period's ends.
pub fn usage(
    daily: &[i64],
    elapsed: usize,
    forecast: i64,
    limit: Option<i64>,
    first_day: &str,
    last_day: &str,
    title: &str,
) -> String {
    let days = daily.len();
    if days == 0 {
        return String::new();
    }
    let elapsed = elapsed.clamp(1, days);
    let (w, h, left, bottom, top) = (720.0_f64, 240.0_f64, 44.0_f64, 24.0_f64, 10.0_f64);
    let mut running = Vec::with_capacity(elapsed);
    let mut sum = 0;
    for v in &daily[..elapsed] {
        sum += v;
        running.push(sum);
    }
    let max = sum.max(forecast).max(limit.unwrap_or(0)).max(1);
    let step = (w - left - 8.0) / days as f64;
    let x = |i: f64| left + step * i;
    let y = |v: i64| top + (h - top - bottom) * (1.0 - v as f64 / max as f64);
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\" class=\"chart\">\
         <line x1=\"{left}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#cbd2dc\"/>\
         <text x=\"{lx}\" y=\"{ty}\" font-size=\"11\" text-anchor=\"end\" fill=\"#667085\">{max}</text>\
         <text x=\"{lx}\" y=\"{b}\" font-size=\"11\" text-anchor=\"end\" fill=\"#667085\">0</text>\
         <text x=\"{left}\" y=\"{fy}\" font-size=\"11\" fill=\"#667085\">{}</text>\
         <text x=\"{r}\" y=\"{fy}\" font-size=\"11\" text-anchor=\"end\" fill=\"#667085\">{}</text>",
        escape(title),
        escape(first_day),
        escape(last_day),
        b = h - bottom,
        r = w - 8.0,
        lx = left - 4.0,
        ty = top + 10.0,
        fy = h - 6.0,
    );
    // The days' bars, scaled to the running total's axis (a day is a small share of a month).
    for (i, v) in daily[..elapsed].iter().enumerate() {
        let top_y = y(*v);
        let _ = write!(
            out,
            "<rect class=\"day\" x=\"{:.1}\" y=\"{top_y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#93c5fd\"><title>{}: {v}</title></rect>",
            x(i as f64) + 1.0,
            (step - 2.0).max(1.0),
            (h - bottom - top_y).max(0.0),
            i + 1,
        );
    }
    let points: Vec<String> = running
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", x(i as f64 + 1.0), y(*v)))
        .collect();
    let _ = write!(
        out,
        "<polyline class=\"used\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{:.1},{:.1} {}\"><title>{sum}</title></polyline>",
        PALETTE[0],
        x(0.0),
        y(0),
        points.join(" "),
    );
    let _ = write!(
        out,
        "<line class=\"forecast\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{}\" stroke-width=\"2\" stroke-dasharray=\"6 4\"><title>{forecast}</title></line>",
        x(elapsed as f64),
        y(sum),
        x(days as f64),
        y(forecast),
        PALETTE[0],
    );
    if let Some(l) = limit {
        let _ = write!(
            out,
            "<line class=\"limit\" x1=\"{left}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"#dc2626\" stroke-dasharray=\"2 3\"><title>{l}</title></line>",
            w - 8.0,
            ly = y(l),
        );
    }
    out.push_str("</svg>");
    out
}

/// A small coloured square for a legend.
pub fn swatch(k: usize) -> String {
    format!(
        "<svg width=\"10\" height=\"10\" aria-hidden=\"true\"><rect width=\"10\" height=\"10\" fill=\"{}\"/></svg>",
        PALETTE[k % PALETTE.len()]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_one_line_per_series_and_escapes_names() {
        let svg = daily_lines(
            &[
                ("Бот <b>".into(), vec![0, 2, 1]),
                ("ВК".into(), vec![1, 1, 1]),
            ],
            "01.01",
            "03.01",
            "Обращения",
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("Бот &lt;b&gt;: 3"));
        assert!(!svg.contains("style="), "presentation attributes only");
        assert!(daily_lines(&[], "", "", "x").is_empty());
    }

    #[test]
    fn the_usage_chart_draws_the_days_so_far_the_forecast_and_the_limit() {
        let svg = usage(
            &[3, 0, 5, 0, 0, 0],
            3,
            16,
            Some(10),
            "01.01",
            "06.01",
            "Сообщения",
        );
        assert_eq!(svg.matches("<rect class=\"day\"").count(), 3);
        assert!(svg.contains("<title>8</title></polyline>"), "{svg}");
        assert!(svg.contains("class=\"forecast\""));
        assert!(svg.contains("<title>16</title></line>"));
        assert!(svg.contains("class=\"limit\""));
        let unlimited = usage(&[1, 1], 1, 2, None, "a", "b", "t");
        assert!(!unlimited.contains("class=\"limit\""));
        assert!(!svg.contains("style="), "presentation attributes only");
    }
}
