//! The PNG bar charts of a benchmark: end-to-end throughput relative to
//! direct, and the micro benchmark's ns per packet. Drawn with plotters'
//! bitmap backend; text uses DejaVu Sans from Debian's `fonts-dejavu-core`,
//! read at run time (no fontconfig).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};
use thiserror::Error;

use super::e2e::{Mode, SummaryRow};
use super::micro::PathRow;
use super::variants::Variant;

/// The font file (Debian package `fonts-dejavu-core`).
pub const FONT_FILE: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
/// The family name the charts ask plotters for.
const FONT: &str = "sans-serif";
const SIZE: (u32, u32) = (1100, 620);

const KEEP_ALIVE_COLOR: RGBColor = RGBColor(0x4c, 0x72, 0xb0);
const CLOSE_COLOR: RGBColor = RGBColor(0xdd, 0x84, 0x52);
const FLOOR_COLOR: RGBColor = RGBColor(0x9a, 0x9a, 0x9a);
const OURS_COLOR: RGBColor = RGBColor(0x4c, 0x72, 0xb0);
const REFERENCE_COLOR: RGBColor = RGBColor(0x40, 0x40, 0x40);

/// A chart could not be drawn.
#[derive(Debug, Error)]
pub enum ChartError {
    #[error("reading the chart font {FONT_FILE}: {0} (it comes with fonts-dejavu-core: run `cargo xtask bootstrap`)")]
    FontFile(std::io::Error),
    #[error("{FONT_FILE} is not a font that ab_glyph can read")]
    BadFont,
    #[error("drawing {}: {message}", .path.display())]
    Draw { path: PathBuf, message: String },
}

/// One bar, in chart coordinates.
struct Bar {
    left: f64,
    right: f64,
    value: f64,
    color: RGBColor,
    label: String,
}

/// Registers the font with plotters (its bytes are read once and kept for
/// the life of the process, as plotters requires).
fn register() -> Result<(), ChartError> {
    static BYTES: OnceLock<&'static [u8]> = OnceLock::new();
    let bytes = match BYTES.get() {
        Some(bytes) => *bytes,
        None => {
            let read = fs::read(FONT_FILE).map_err(ChartError::FontFile)?;
            *BYTES.get_or_init(|| Box::leak(read.into_boxed_slice()))
        }
    };
    register_font(FONT, FontStyle::Normal, bytes).map_err(|_| ChartError::BadFont)
}

/// `target/bench/e2e.png`: requests per second of each load balancer
/// relative to direct, keep-alive and close side by side.
pub fn e2e(path: &Path, rows: &[SummaryRow]) -> Result<(), ChartError> {
    register()?;
    let variants: Vec<Variant> = Variant::ALL
        .into_iter()
        .filter(|variant| *variant != Variant::Direct)
        .collect();
    let mut bars = Vec::new();
    for (index, variant) in variants.iter().enumerate() {
        for (mode, offset, color) in [
            (Mode::KeepAlive, 0.12, KEEP_ALIVE_COLOR),
            (Mode::Close, 0.5, CLOSE_COLOR),
        ] {
            let ratio = rows
                .iter()
                .find(|row| row.mode == mode && row.variant == *variant)
                .and_then(|row| row.ratio_to_direct);
            if let Some(ratio) = ratio {
                let left = index as f64 + offset;
                bars.push(Bar {
                    left,
                    right: left + 0.38,
                    value: ratio,
                    color,
                    label: format!("{ratio:.2}"),
                });
            }
        }
    }
    let labels: Vec<(f64, &str)> = variants
        .iter()
        .enumerate()
        .map(|(index, variant)| (index as f64 + 0.5, short_variant(*variant)))
        .collect();
    let legend = [
        ("keep-alive", KEEP_ALIVE_COLOR),
        ("Connection: close", CLOSE_COLOR),
    ];
    draw(
        path,
        &Chart {
            title: "End to end: requests/s relative to direct (no load balancer)",
            y_label: "ratio to direct (1.0 = no LB)",
            groups: variants.len(),
            bars: &bars,
            group_labels: &labels,
            legend: &legend,
            reference: Some(1.0),
            y_decimals: 1,
        },
    )
}

/// `target/bench/micro.png`: ns per packet of each path and of the floors.
pub fn micro(path: &Path, rows: &[PathRow]) -> Result<(), ChartError> {
    register()?;
    let bars: Vec<Bar> = rows
        .iter()
        .enumerate()
        .map(|(index, row)| Bar {
            left: index as f64 + 0.15,
            right: index as f64 + 0.85,
            value: row.ns_per_packet,
            color: if row.program == "lb_xdp" {
                OURS_COLOR
            } else {
                FLOOR_COLOR
            },
            label: format!("{:.0}", row.ns_per_packet),
        })
        .collect();
    let labels: Vec<(f64, &str)> = rows
        .iter()
        .enumerate()
        .map(|(index, row)| (index as f64 + 0.5, short_path(&row.key)))
        .collect();
    let legend = [("lb_xdp", OURS_COLOR), ("floor programs", FLOOR_COLOR)];
    draw(
        path,
        &Chart {
            title: "Micro: BPF_PROG_TEST_RUN time per packet (kernel-reported, median)",
            y_label: "ns per packet",
            groups: rows.len(),
            bars: &bars,
            group_labels: &labels,
            legend: &legend,
            reference: None,
            y_decimals: 0,
        },
    )
}

fn short_variant(variant: Variant) -> &'static str {
    match variant {
        Variant::Direct => "direct",
        Variant::Haproxy => "HAProxy",
        Variant::Nftables => "nftables DNAT",
        Variant::OursMaglev => "ours, Maglev",
        Variant::OursRoundRobin => "ours, round-robin",
    }
}

fn short_path(key: &str) -> &str {
    match key {
        "established_tcp" => "established",
        "new_tcp" => "new TCP flow",
        "syn_repeat" => "SYN repeated",
        "syn_retransmit" => "SYN retransmitted",
        "non_vip" => "non-VIP",
        "udp_service" => "UDP new flow",
        "floor_pass" => "xdp_pass",
        "floor_mac_swap" => "xdp_mac_swap",
        other => other,
    }
}

/// What [`draw`] draws.
struct Chart<'a> {
    title: &'a str,
    y_label: &'a str,
    groups: usize,
    bars: &'a [Bar],
    group_labels: &'a [(f64, &'a str)],
    legend: &'a [(&'a str, RGBColor)],
    /// A horizontal line at this value.
    reference: Option<f64>,
    /// Decimals of the y axis labels.
    y_decimals: usize,
}

fn draw(path: &Path, chart: &Chart<'_>) -> Result<(), ChartError> {
    let failed = |message: String| ChartError::Draw {
        path: path.to_owned(),
        message,
    };
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    draw_on(&root, chart).map_err(failed)?;
    root.present().map_err(|error| failed(error.to_string()))
}

fn draw_on(root: &DrawingArea<BitMapBackend<'_>, Shift>, chart: &Chart<'_>) -> Result<(), String> {
    let error = |error: DrawingAreaErrorKind<_>| error.to_string();
    root.fill(&WHITE).map_err(error)?;
    let highest = chart
        .bars
        .iter()
        .map(|bar| bar.value)
        .chain(chart.reference)
        .fold(0.0, f64::max);
    let top = if highest > 0.0 { highest * 1.18 } else { 1.0 };
    let mut context = ChartBuilder::on(root)
        .caption(chart.title, (FONT, 22))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..chart.groups as f64, 0.0..top)
        .map_err(error)?;
    context
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(chart.y_label)
        .y_label_formatter(&|value| format!("{value:.*}", chart.y_decimals))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(error)?;

    for (name, color) in chart.legend {
        let color = *color;
        context
            .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())
            .map_err(error)?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
    }
    context
        .draw_series(chart.bars.iter().map(|bar| {
            Rectangle::new(
                [(bar.left, 0.0), (bar.right, bar.value)],
                bar.color.filled(),
            )
        }))
        .map_err(error)?;
    let value_style =
        TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    context
        .draw_series(chart.bars.iter().map(|bar| {
            Text::new(
                bar.label.clone(),
                ((bar.left + bar.right) / 2.0, bar.value + top * 0.01),
                value_style.clone(),
            )
        }))
        .map_err(error)?;
    if let Some(reference) = chart.reference {
        context
            .draw_series(std::iter::once(PathElement::new(
                vec![(0.0, reference), (chart.groups as f64, reference)],
                REFERENCE_COLOR.stroke_width(2),
            )))
            .map_err(error)?;
    }
    context
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(error)?;

    let label_style =
        TextStyle::from((FONT, 15).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    for (x, label) in chart.group_labels {
        let (px, py) = context.backend_coord(&(*x, 0.0));
        root.draw(&Text::new(
            label.to_string(),
            (px, py + 10),
            label_style.clone(),
        ))
        .map_err(error)?;
    }
    Ok(())
}
