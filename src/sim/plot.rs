//! The PNG plots of a run (800×500 each), drawn with `plotters` into an RGB buffer:
//!
//! - `emission_share.png`: the adversarial and honest shares of the miners' cumulative emission,
//!   by block height;
//! - `trust_by_behaviour.png`: the miners' mean weight per behaviour label, epoch by epoch;
//! - `latency_cdf.png`: the empirical CDF of the latency of the requests served (`ok`);
//! - `receipts_pending.png`: receipts countersigned and not yet final, and final, by height.
//!
//! Text is drawn by `ab_glyph` from Noto Sans Regular embedded in the binary (`ttf-noto-sans`),
//! so no system font is needed. The PNG is written here (zlib via `flate2`, chunk CRCs via
//! `crc32fast`) rather than by plotters' encoder, which would pull in `image`.
//!
//! Empty inputs draw an empty chart with its title and a note; nothing here panics on data.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::record::{BlockRow, PeerRow, RequestRow};

/// Size of every plot (pixels).
const WIDTH: u32 = 800;
const HEIGHT: u32 = 500;

/// The family every text of the plots uses (plotters' default for axis labels too).
const FONT: &str = "sans-serif";

/// Tableau 10, a palette readable on white and by most colour-blind readers.
const TAB10: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];
const BLUE_: RGBColor = TAB10[0];
const ORANGE: RGBColor = TAB10[1];
const GREEN_: RGBColor = TAB10[2];
const RED_: RGBColor = TAB10[3];

/// Draws the four plots into `out` (created if missing).
pub fn draw_all(out: &Path, blocks: &[BlockRow], peers: &[PeerRow], requests: &[RequestRow]) -> Result<(), String> {
    register_fonts()?;
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    emission_share(&out.join("emission_share.png"), blocks)?;
    trust_by_behaviour(&out.join("trust_by_behaviour.png"), peers)?;
    latency_cdf(&out.join("latency_cdf.png"), requests)?;
    receipts_pending(&out.join("receipts_pending.png"), blocks)?;
    Ok(())
}

/// Registers the embedded font under the generic family names, once per process.
fn register_fonts() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            for family in ["sans-serif", "serif", "monospace"] {
                plotters::style::register_font(family, FontStyle::Normal, ttf_noto_sans::REGULAR)
                    .map_err(|_| "plot: the embedded Noto Sans font could not be parsed".to_string())?;
            }
            Ok(())
        })
        .clone()
}

/// 1. The share of the miners' cumulative emission taken by adversarial miners, and the rest.
fn emission_share(path: &Path, blocks: &[BlockRow]) -> Result<(), String> {
    let mut adversarial = vec![];
    let mut honest = vec![];
    for b in blocks.iter().filter(|b| b.emission_miners > 0) {
        let share = (b.emission_adversarial as f64 / b.emission_miners as f64).clamp(0.0, 1.0);
        adversarial.push((b.height as f64, share));
        honest.push((b.height as f64, 1.0 - share));
    }
    let chart = Chart {
        title: "Miners' cumulative emission: adversarial vs honest share",
        x_desc: "block height",
        y_desc: "share of the miners' emission",
        x_fmt: fmt_int,
        y_fmt: fmt_share,
        y_bounds: Some((0.0, 1.0)),
        legend: SeriesLabelPosition::UpperRight,
        empty_note: "no emission to miners yet",
    };
    let series = vec![
        Series { label: "adversarial miners".into(), color: RED_, points: adversarial },
        Series { label: "honest miners".into(), color: GREEN_, points: honest },
    ];
    chart.draw(path, &series)
}

/// 2. Per epoch, the mean weight of the miners of each behaviour label (x: the epoch's height).
fn trust_by_behaviour(path: &Path, peers: &[PeerRow]) -> Result<(), String> {
    // behaviour -> epoch -> (height, sum of weights, miners)
    let mut by: BTreeMap<&str, BTreeMap<u64, (u64, f64, u64)>> = BTreeMap::new();
    for p in peers.iter().filter(|p| p.role == "miner" && p.weight.is_finite()) {
        let e = by.entry(p.behaviour.as_str()).or_default().entry(p.epoch).or_insert((p.height, 0.0, 0));
        e.0 = e.0.max(p.height);
        e.1 += p.weight;
        e.2 += 1;
    }
    // Honest first (green), then the others in label order, each its own colour.
    let mut labels: Vec<&str> = by.keys().copied().collect();
    labels.sort_by_key(|l| (*l != "honest", *l));
    let others: Vec<RGBColor> = TAB10.iter().copied().filter(|c| *c != GREEN_).collect();
    let mut series = vec![];
    let mut next = 0;
    for label in labels {
        let color = if label == "honest" {
            GREEN_
        } else {
            next += 1;
            others[(next - 1) % others.len()]
        };
        let points = by
            .get(label)
            .map(|epochs| epochs.values().map(|(h, sum, n)| (*h as f64, sum / (*n).max(1) as f64)).collect())
            .unwrap_or_default();
        series.push(Series { label: label.to_string(), color, points });
    }
    let chart = Chart {
        title: "Miners' trust by behaviour (mean validator weight per epoch)",
        x_desc: "block height (end of epoch)",
        y_desc: "mean weight",
        x_fmt: fmt_int,
        y_fmt: fmt_share,
        y_bounds: Some((0.0, 0.1)),
        legend: SeriesLabelPosition::UpperRight,
        empty_note: "no miners recorded",
    };
    chart.draw(path, &series)
}

/// 3. Empirical CDF of the latency of the requests that were served.
fn latency_cdf(path: &Path, requests: &[RequestRow]) -> Result<(), String> {
    let mut lat: Vec<f64> =
        requests.iter().filter(|r| r.outcome == "ok" && r.latency_ms.is_finite()).map(|r| r.latency_ms).collect();
    lat.sort_by(f64::total_cmp);
    let n = lat.len();
    // A step function: at each sample the CDF jumps from i/n to (i+1)/n.
    let mut points = Vec::with_capacity(2 * n);
    for (i, x) in lat.iter().enumerate() {
        points.push((*x, i as f64 / n as f64));
        points.push((*x, (i + 1) as f64 / n as f64));
    }
    let label = if n == 0 {
        "served requests (none)".to_string()
    } else {
        format!(
            "served requests (n = {n}, p50 = {} ms, p99 = {} ms)",
            fmt_ms(&percentile(&lat, 0.50)),
            fmt_ms(&percentile(&lat, 0.99))
        )
    };
    let chart = Chart {
        title: "Request latency, empirical CDF (outcome ok)",
        x_desc: "latency (ms)",
        y_desc: "fraction of requests <= latency",
        x_fmt: fmt_ms,
        y_fmt: fmt_share,
        y_bounds: Some((0.0, 1.0)),
        legend: SeriesLabelPosition::LowerRight,
        empty_note: "no request served",
    };
    chart.draw(path, &[Series { label, color: BLUE_, points }])
}

/// 4. Receipts countersigned and not yet final, and final, by block height.
fn receipts_pending(path: &Path, blocks: &[BlockRow]) -> Result<(), String> {
    let pending = blocks.iter().map(|b| (b.height as f64, b.pending as f64)).collect();
    let finalised = blocks.iter().map(|b| (b.height as f64, b.finalised as f64)).collect();
    let chart = Chart {
        title: "Receipts: pending vs finalised",
        x_desc: "block height",
        y_desc: "receipts",
        x_fmt: fmt_int,
        y_fmt: fmt_int,
        y_bounds: Some((0.0, 1.0)),
        legend: SeriesLabelPosition::UpperLeft,
        empty_note: "no blocks recorded",
    };
    let series = vec![
        Series { label: "pending (countersigned, not final)".into(), color: ORANGE, points: pending },
        Series { label: "finalised".into(), color: BLUE_, points: finalised },
    ];
    chart.draw(path, &series)
}

/// Nearest-rank percentile of sorted, non-empty `v`.
fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = (p * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Integer axes (heights, counts): integral ticks only.
fn fmt_int(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        String::new()
    }
}

/// Shares and weights (0..1): the ticks of the legend's headroom above 1 are left blank.
fn fmt_share(v: &f64) -> String {
    if *v <= 1.0 + 1e-9 {
        format!("{v:.2}")
    } else {
        String::new()
    }
}

fn fmt_ms(v: &f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

struct Series {
    label: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// One line chart: what differs between the four plots.
struct Chart {
    title: &'static str,
    x_desc: &'static str,
    y_desc: &'static str,
    x_fmt: fn(&f64) -> String,
    y_fmt: fn(&f64) -> String,
    /// A y range always shown (widened to the data).
    y_bounds: Option<(f64, f64)>,
    legend: SeriesLabelPosition,
    /// Written across the plot when no series has a point.
    empty_note: &'static str,
}

impl Chart {
    fn draw(&self, path: &Path, series: &[Series]) -> Result<(), String> {
        let err = |e: &dyn Display| format!("plot {}: {e}", path.display());
        let mut rgb = vec![0u8; WIDTH as usize * HEIGHT as usize * 3];
        {
            let backend: BitMapBackend<'_> =
                BitMapBackend::with_buffer_and_format(&mut rgb, (WIDTH, HEIGHT)).map_err(|e| err(&e))?;
            let root = backend.into_drawing_area();
            root.fill(&WHITE).map_err(|e| err(&e))?;

            let finite = || series.iter().flat_map(|s| s.points.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
            let (x0, x1) = span(finite().map(|p| p.0), None, 0.0);
            // A legend in a top corner gets headroom above the data: its rows and a margin, out of
            // the ~390 px of the plotting area.
            use SeriesLabelPosition::{UpperLeft, UpperMiddle, UpperRight};
            let top_legend = matches!(self.legend, UpperLeft | UpperMiddle | UpperRight) && !series.is_empty();
            let room = if top_legend { ((series.len() * 19 + 20) as f64 / 390.0).min(0.6) } else { 0.05 };
            let (y0, y1) = span(finite().map(|p| p.1), self.y_bounds, room / (1.0 - room));

            let mut chart = ChartBuilder::on(&root)
                .caption(self.title, (FONT, 22))
                .margin(14)
                .x_label_area_size(42)
                .y_label_area_size(62)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| err(&e))?;
            chart
                .configure_mesh()
                .x_desc(self.x_desc)
                .y_desc(self.y_desc)
                .x_label_formatter(&self.x_fmt)
                .y_label_formatter(&self.y_fmt)
                .label_style((FONT, 13))
                .axis_desc_style((FONT, 15))
                .light_line_style(RGBColor(0xee, 0xee, 0xee))
                .draw()
                .map_err(|e| err(&e))?;

            for s in series {
                let color = s.color;
                let points = s.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite());
                chart
                    .draw_series(LineSeries::new(points, color.stroke_width(2)))
                    .map_err(|e| err(&e))?
                    .label(s.label.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            }
            if !series.is_empty() {
                chart
                    .configure_series_labels()
                    .position(self.legend.clone())
                    .label_font((FONT, 13))
                    .background_style(WHITE.mix(0.85))
                    .border_style(RGBColor(0x99, 0x99, 0x99))
                    .draw()
                    .map_err(|e| err(&e))?;
            }
            if series.iter().all(|s| s.points.is_empty()) {
                let (w, h) = (WIDTH as i32, HEIGHT as i32);
                let style = (FONT, 18).into_font().color(&RGBColor(0x66, 0x66, 0x66));
                let style = style.pos(Pos::new(HPos::Center, VPos::Center));
                root.draw(&Text::new(self.empty_note, (w / 2, h / 2), style)).map_err(|e| err(&e))?;
            }
            root.present().map_err(|e| err(&e))?;
        }
        write_png(path, &rgb, WIDTH, HEIGHT)
    }
}

/// The range shown for `values`: their min..max, widened to `bounds`, then padded by `pad` of
/// its width on the upper side; a degenerate range is opened around its value.
fn span(values: impl Iterator<Item = f64>, bounds: Option<(f64, f64)>, pad: f64) -> (f64, f64) {
    let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if let Some((blo, bhi)) = bounds {
        lo = lo.min(blo);
        hi = hi.max(bhi);
    }
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
        let d = (lo.abs() * 0.05).max(1.0);
        return (lo - d, hi + d);
    }
    (lo, hi + (hi - lo) * pad)
}

/// Writes an 8-bit RGB buffer as a PNG (no interlace, filter None on every row).
fn write_png(path: &Path, rgb: &[u8], width: u32, height: u32) -> Result<(), String> {
    let err = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let stride = width as usize * 3;
    if stride == 0 || rgb.len() != stride * height as usize {
        return Err(format!("plot {}: buffer of {} bytes for {width}×{height}", path.display(), rgb.len()));
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    for row in rgb.chunks_exact(stride) {
        z.write_all(&[0]).map_err(err)?;
        z.write_all(row).map_err(err)?;
    }
    let idat = z.finish().map_err(err)?;

    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // depth 8, RGB, deflate, adaptive filtering, no interlace

    let mut png = Vec::with_capacity(idat.len() + 64);
    png.extend_from_slice(PNG_MAGIC);
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &idat);
    chunk(&mut png, b"IEND", &[]);
    std::fs::write(path, png).map_err(err)
}

const PNG_MAGIC: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    const FILES: [&str; 4] =
        ["emission_share.png", "trust_by_behaviour.png", "latency_cdf.png", "receipts_pending.png"];

    /// Decodes what [`write_png`] writes (checking every chunk's CRC): width, height, RGB pixels.
    fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        assert_eq!(&bytes[..8], PNG_MAGIC, "PNG signature");
        let (mut pos, mut size, mut idat) = (8, (0, 0), vec![]);
        while pos < bytes.len() {
            let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
            let kind = &bytes[pos + 4..pos + 8];
            let data = &bytes[pos + 8..pos + 8 + len];
            let crc = u32::from_be_bytes(bytes[pos + 8 + len..pos + 12 + len].try_into().unwrap());
            let mut h = crc32fast::Hasher::new();
            h.update(kind);
            h.update(data);
            assert_eq!(h.finalize(), crc, "CRC of {}", String::from_utf8_lossy(kind));
            match kind {
                b"IHDR" => {
                    size = (
                        u32::from_be_bytes(data[..4].try_into().unwrap()),
                        u32::from_be_bytes(data[4..8].try_into().unwrap()),
                    );
                    assert_eq!(&data[8..], &[8, 2, 0, 0, 0]);
                }
                b"IDAT" => idat.extend_from_slice(data),
                b"IEND" => assert_eq!(pos + 12, bytes.len(), "IEND is last"),
                other => panic!("unexpected chunk {other:?}"),
            }
            pos += 12 + len;
        }
        let mut raw = vec![];
        flate2::read::ZlibDecoder::new(&idat[..]).read_to_end(&mut raw).unwrap();
        let stride = size.0 as usize * 3;
        assert_eq!(raw.len(), (stride + 1) * size.1 as usize);
        let mut rgb = Vec::with_capacity(stride * size.1 as usize);
        for row in raw.chunks_exact(stride + 1) {
            assert_eq!(row[0], 0, "filter None");
            rgb.extend_from_slice(&row[1..]);
        }
        (size.0, size.1, rgb)
    }

    /// Dark pixels in rows `rows` (text and lines are dark on the white background).
    fn dark_pixels(rgb: &[u8], width: u32, rows: std::ops::Range<u32>) -> usize {
        let stride = width as usize * 3;
        rgb[rows.start as usize * stride..rows.end as usize * stride]
            .chunks_exact(3)
            .filter(|p| p.iter().map(|c| *c as u32).sum::<u32>() < 3 * 128)
            .count()
    }

    fn check_files(dir: &Path) {
        for f in FILES {
            let bytes = std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            let (w, h, rgb) = decode(&bytes);
            assert_eq!((w, h), (WIDTH, HEIGHT), "{f}");
            // The caption sits in the top 40 rows: drawn, so the font works.
            assert!(dark_pixels(&rgb, w, 0..40) > 100, "{f}: no title drawn");
        }
    }

    fn block(height: u64, miners: u128, adversarial: u128, pending: u64, finalised: u64) -> BlockRow {
        BlockRow {
            height,
            emission_miners: miners,
            emission_adversarial: adversarial,
            pending,
            finalised,
            countersigned: pending + finalised,
            ..Default::default()
        }
    }

    fn miner(epoch: u64, peer: &str, behaviour: &str, weight: f64) -> PeerRow {
        PeerRow {
            epoch,
            height: epoch * 10,
            peer: peer.into(),
            role: "miner".into(),
            behaviour: behaviour.into(),
            weight,
            ..Default::default()
        }
    }

    fn request(seq: u64, latency_ms: f64, outcome: &str) -> RequestRow {
        RequestRow { seq, latency_ms, outcome: outcome.into(), ..Default::default() }
    }

    #[test]
    fn draws_the_four_plots() {
        let dir = tempfile::tempdir().unwrap();
        let blocks: Vec<BlockRow> = (0..30)
            .map(|h| {
                let miners = if h < 3 { 0 } else { 1_000_000_000_000_000_000u128 * h as u128 };
                block(h, miners, miners / 5, h % 7, h * 2)
            })
            .collect();
        let mut peers = vec![];
        for epoch in 1..=5 {
            peers.push(miner(epoch, "m0", "honest", 0.3 + 0.05 * epoch as f64));
            peers.push(miner(epoch, "m1", "honest", 0.35));
            peers.push(miner(epoch, "m2", "edited", 0.3 - 0.05 * epoch as f64));
            peers.push(miner(epoch, "m3", "intermittent:0.5", 0.2));
            peers.push(PeerRow { role: "validator".into(), weight: 7.0, ..miner(epoch, "v0", "honest", 0.0) });
        }
        let requests: Vec<RequestRow> = (0..200)
            .map(|i| request(i, 50.0 + (i * 37 % 400) as f64, if i % 10 == 0 { "timeout" } else { "ok" }))
            .chain([request(900, f64::NAN, "ok")])
            .collect();
        draw_all(dir.path(), &blocks, &peers, &requests).unwrap();
        check_files(dir.path());
    }

    #[test]
    fn empty_inputs_still_draw() {
        let dir = tempfile::tempdir().unwrap();
        draw_all(dir.path(), &[], &[], &[]).unwrap();
        check_files(dir.path());
    }

    #[test]
    fn degenerate_inputs_still_draw() {
        // One point each, zero emission everywhere, no request served, miners' output dir nested.
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("plots");
        draw_all(&out, &[block(4, 0, 0, 0, 0)], &[miner(1, "m", "random", 0.0)], &[request(0, 12.5, "ok")]).unwrap();
        check_files(&out);
        draw_all(&out, &[block(4, 10, 10, 3, 3)], &[miner(1, "m", "honest", f64::NAN)], &[request(0, 1.0, "failed")])
            .unwrap();
        check_files(&out);
    }

    #[test]
    fn percentile_and_span() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.5), 2.0);
        assert_eq!(percentile(&v, 0.99), 4.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert!(percentile(&[], 0.5).is_nan());
        assert_eq!(span([].into_iter(), None, 0.0), (0.0, 1.0));
        assert_eq!(span([5.0].into_iter(), None, 0.0), (4.0, 6.0));
        assert_eq!(span([0.2, 0.4].into_iter(), Some((0.0, 1.0)), 0.0), (0.0, 1.0));
        assert_eq!(span([0.0, 10.0].into_iter(), None, 0.1), (0.0, 11.0));
    }
}
