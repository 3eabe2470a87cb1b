//! The bench's table as a picture: for the many-flows and the one-flow UDP
//! loads, what each path delivered (over what the generator sent) and what
//! each packet cost the director, side by side, one bar per setup.

use plotters::prelude::*;

use super::{Metric, Report};

/// Pixel size of the whole chart.
const SIZE: (u32, u32) = (1200, 760);
/// Delivered pps bars.
const DELIVERED: RGBColor = RGBColor(31, 119, 180);
/// What the generator sent, behind the delivered bar.
const SENT: RGBColor = RGBColor(198, 219, 239);
/// Director CPU per packet bars.
const COST: RGBColor = RGBColor(214, 96, 39);

/// One panel: a horizontal bar per setup.
struct Panel {
    title: String,
    unit: &'static str,
    /// Per setup: the bar's value and, behind it, a wider one (sent).
    bars: Vec<(String, Option<f64>, Option<f64>)>,
    color: RGBColor,
    /// How the table writes these values.
    metric: Metric,
}

impl Report {
    /// The chart as an SVG document.
    pub fn svg(&self) -> String {
        let median = |setup: &str, m: Metric| self.cell(setup, m).and_then(super::Cell::median);
        let panels: Vec<Panel> = [
            (
                "many flows",
                Metric::UdpManyPps,
                Metric::UdpManySent,
                Metric::UdpManyUs,
            ),
            (
                "one flow",
                Metric::UdpOnePps,
                Metric::UdpOneSent,
                Metric::UdpOneUs,
            ),
        ]
        .into_iter()
        .flat_map(|(load, pps, sent, us)| {
            [
                Panel {
                    title: format!("UDP {load}: delivered pps (light: generator sent)"),
                    unit: "packets/s",
                    bars: self
                        .setups
                        .iter()
                        .map(|s| (s.clone(), median(s, pps), median(s, sent)))
                        .collect(),
                    color: DELIVERED,
                    metric: pps,
                },
                Panel {
                    title: format!("UDP {load}: director CPU per packet (lower is cheaper)"),
                    unit: "µs/packet",
                    bars: self
                        .setups
                        .iter()
                        .map(|s| (s.clone(), median(s, us), None))
                        .collect(),
                    color: COST,
                    metric: us,
                },
            ]
        })
        .collect();
        let caption = format!(
            "rvs-lab bench: medians of {} × {} s, {} queue(s) per veth, director {}",
            self.repetitions,
            self.duration_secs,
            self.queues,
            if self.pinned {
                "alone on CPU 1"
            } else {
                "not pinned"
            }
        );
        let mut svg = String::new();
        // Drawing into a String cannot fail for I/O reasons; a plotters
        // error leaves a partial picture, which still beats no table.
        let _ = draw(&mut svg, &caption, &panels);
        svg
    }
}

fn draw(svg: &mut String, caption: &str, panels: &[Panel]) -> Result<(), String> {
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(caption, ("sans-serif", 20))
        .map_err(|e| e.to_string())?;
    let areas = root.split_evenly((2, 2));
    for (area, panel) in areas.iter().zip(panels) {
        draw_panel(area, panel)?;
    }
    root.present().map_err(|e| e.to_string())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
) -> Result<(), String> {
    let n = panel.bars.len().max(1);
    let top = panel
        .bars
        .iter()
        .flat_map(|(_, v, behind)| [*v, *behind])
        .flatten()
        .fold(0.0_f64, f64::max);
    let top = if top > 0.0 { top * 1.15 } else { 1.0 };
    // Setups top to bottom in table order: row 0 is drawn at the bottom.
    let row = |i: usize| n - 1 - i;
    let names: Vec<String> = panel.bars.iter().rev().map(|(s, _, _)| s.clone()).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(100)
        // A segmented 0..k has k + 1 slots: one per setup.
        .build_cartesian_2d(0.0..top, (0..n - 1).into_segmented())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(WHITE)
        .x_desc(panel.unit)
        .x_label_formatter(&|v| if *v == 0.0 { "0".into() } else { super::si(*v) })
        .y_labels(n)
        .y_label_formatter(&|y| match y {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(|e| e.to_string())?;
    let bar = |i: usize, value: f64, color: RGBColor| {
        let mut r = Rectangle::new(
            [
                (0.0, SegmentValue::Exact(i)),
                (value, SegmentValue::Exact(i + 1)),
            ],
            color.filled(),
        );
        // A gap between neighbouring bars.
        r.set_margin(4, 4, 0, 0);
        r
    };
    // What the generator sent behind, what was delivered (or the cost) in
    // front.
    let behind = panel
        .bars
        .iter()
        .enumerate()
        .filter_map(|(i, (_, _, sent))| sent.map(|b| bar(row(i), b, SENT)));
    let front = panel
        .bars
        .iter()
        .enumerate()
        .filter_map(|(i, (_, v, _))| v.map(|v| bar(row(i), v, panel.color)));
    chart
        .draw_series(behind.chain(front))
        .map_err(|e| e.to_string())?;
    // The value at the end of each bar, as the table prints it.
    chart
        .draw_series(panel.bars.iter().enumerate().filter_map(|(i, (_, v, _))| {
            v.map(|v| {
                Text::new(
                    format!(" {}", panel.metric.format(v)),
                    (v, SegmentValue::CenterOf(row(i))),
                    ("sans-serif", 12),
                )
            })
        }))
        .map_err(|e| e.to_string())?;
    Ok(())
}
