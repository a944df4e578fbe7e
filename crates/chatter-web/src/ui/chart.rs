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
}
