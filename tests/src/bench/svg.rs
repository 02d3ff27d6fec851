//! Hand-written SVG bar charts: one group per path (or level), one
//! horizontal bar per system, a whisker for the spread, the value written
//! at the end of the bar.

use std::fmt::Write;

pub struct Bar {
    pub label: String,
    pub colour: String,
    /// None: nothing measured (the bar says why in `text`).
    pub value: Option<f64>,
    /// The whisker, e.g. min..max over rounds, or p50..p99.
    pub spread: Option<(f64, f64)>,
    /// Written after the bar.
    pub text: String,
}

pub struct Group {
    pub title: String,
    pub bars: Vec<Bar>,
}

pub struct Chart {
    pub title: String,
    /// The unit and which way is better.
    pub subtitle: String,
    pub groups: Vec<Group>,
}

const LABEL_X: f64 = 12.0;
const PLOT_W: f64 = 430.0;
/// Room after the plot for the longest value text.
const TEXT_W: f64 = 250.0;
/// A 12 px sans-serif character's typical width, for sizing the label column.
const CHAR_W: f64 = 6.8;
const ROW: f64 = 20.0;
const GROUP_HEAD: f64 = 24.0;
const TOP: f64 = 58.0;

pub fn render(chart: &Chart) -> String {
    let max = chart
        .groups
        .iter()
        .flat_map(|g| &g.bars)
        .flat_map(|b| [b.value, b.spread.map(|s| s.1)])
        .flatten()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let (top, step) = nice_scale(max);
    let longest = chart
        .groups
        .iter()
        .flat_map(|g| &g.bars)
        .map(|b| b.label.chars().count())
        .max()
        .unwrap_or(0);
    let plot_x = (LABEL_X + 12.0 + longest as f64 * CHAR_W).max(180.0);
    let width = plot_x + PLOT_W + TEXT_W;
    let scale = |v: f64| plot_x + (v.max(0.0) / top) * PLOT_W;
    let rows: usize = chart.groups.iter().map(|g| g.bars.len()).sum();
    let height = TOP + chart.groups.len() as f64 * (GROUP_HEAD + 6.0) + rows as f64 * ROW + 40.0;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height}" viewBox="0 0 {width:.0} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r##"<rect width="100%" height="100%" fill="white"/><text x="{LABEL_X}" y="22" font-size="16" font-weight="bold">{}</text><text x="{LABEL_X}" y="40" fill="#555">{}</text>"##,
        esc(&chart.title),
        esc(&chart.subtitle)
    );
    // Grid and scale.
    let bottom = height - 30.0;
    let mut tick = 0.0;
    while tick <= top * 1.0001 {
        let x = scale(tick);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{bottom}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#555">{}</text>"##,
            bottom + 14.0,
            esc(&short_number(tick))
        );
        tick += step;
    }
    let mut y = TOP;
    for group in &chart.groups {
        y += GROUP_HEAD;
        let _ = writeln!(
            s,
            r#"<text x="{LABEL_X}" y="{:.1}" font-weight="bold">{}</text>"#,
            y - 6.0,
            esc(&group.title)
        );
        for bar in &group.bars {
            let mid = y + ROW / 2.0;
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                plot_x - 8.0,
                mid + 4.0,
                esc(&bar.label)
            );
            let mut text_x = plot_x + 6.0;
            if let Some(v) = bar.value.filter(|v| v.is_finite()) {
                let end = scale(v);
                let _ = writeln!(
                    s,
                    r#"<rect x="{plot_x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"/>"#,
                    y + 3.0,
                    (end - plot_x).max(1.0),
                    ROW - 6.0,
                    bar.colour
                );
                text_x = end + 6.0;
                if let Some((lo, hi)) = bar
                    .spread
                    .filter(|(lo, hi)| lo.is_finite() && hi.is_finite())
                {
                    let (x1, x2) = (scale(lo), scale(hi));
                    let _ = writeln!(
                        s,
                        r##"<path d="M{x1:.1} {:.1}V{:.1}M{x1:.1} {mid:.1}H{x2:.1}M{x2:.1} {:.1}V{:.1}" stroke="#222" fill="none"/>"##,
                        mid - 4.0,
                        mid + 4.0,
                        mid - 4.0,
                        mid + 4.0
                    );
                    text_x = text_x.max(x2 + 6.0);
                }
            }
            let _ = writeln!(
                s,
                r##"<text x="{text_x:.1}" y="{:.1}" fill="#222">{}</text>"##,
                mid + 4.0,
                esc(&bar.text)
            );
            y += ROW;
        }
        y += 6.0;
    }
    s.push_str("</svg>\n");
    s
}

/// The axis end and tick step: 1, 2 or 5 times a power of ten, 4-8 ticks.
fn nice_scale(max: f64) -> (f64, f64) {
    if max <= 0.0 || !max.is_finite() {
        return (1.0, 0.25);
    }
    let rough = max / 5.0;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| max / s <= 6.0)
        .unwrap_or(10.0 * power);
    ((max / step).ceil() * step, step)
}

/// 1.5k, 2M, 0.25: compact axis labels.
pub fn short_number(v: f64) -> String {
    let a = v.abs();
    let (x, unit) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let text = format!("{x:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{unit}")
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_end_on_a_round_number() {
        assert_eq!(nice_scale(93.0), (100.0, 20.0));
        assert_eq!(nice_scale(1.2e6), (1.2e6, 2e5));
        assert_eq!(nice_scale(0.0), (1.0, 0.25));
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(short_number(1500.0), "1.5k");
        assert_eq!(short_number(2_000_000.0), "2M");
        assert_eq!(short_number(0.25), "0.25");
        assert_eq!(short_number(0.0), "0");
    }

    #[test]
    fn a_chart_is_well_formed_text() {
        let chart = Chart {
            title: "a < b & c".into(),
            subtitle: "per second".into(),
            groups: vec![Group {
                title: "g".into(),
                bars: vec![
                    Bar {
                        label: "x".into(),
                        colour: "#000".into(),
                        value: Some(3.0),
                        spread: Some((2.0, 4.0)),
                        text: "3".into(),
                    },
                    Bar {
                        label: "y".into(),
                        colour: "#000".into(),
                        value: None,
                        spread: None,
                        text: "not available".into(),
                    },
                ],
            }],
        };
        let svg = render(&chart);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("a &lt; b &amp; c"));
        assert_eq!(svg.matches("<rect").count(), 2, "background and one bar");
    }
}
