//! `jifen bench --plot FILE.svg`: settled orders per second over the run, and the distribution
//! of submit → settled latencies, as one SVG.

use std::path::Path;
use std::time::Duration;

use plotters::prelude::*;

use super::report::Sample;

/// Width of one throughput bin; its count is scaled to orders per second.
const BIN: Duration = Duration::from_millis(500);
/// Latency histogram buckets, from 0 to the slowest order.
const BUCKETS: u32 = 40;

/// Draws the run's figures into `path`.
pub fn draw(path: &Path, samples: &[Sample], wall: Duration) -> anyhow::Result<()> {
    // plotters' errors borrow from the backend: they are made text here.
    render(path, samples, wall).map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))
}

fn render(
    path: &Path,
    samples: &[Sample],
    wall: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(350);

    let rate = throughput(samples, wall);
    let seconds = wall.as_secs_f64().max(BIN.as_secs_f64());
    let peak = rate.iter().map(|(_, r)| *r).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&top)
        .caption("Settled orders per second", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..seconds, 0.0..peak * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the first submit")
        .y_desc("orders/s")
        .draw()?;
    chart.draw_series(LineSeries::new(rate, BLUE.stroke_width(2)))?;

    let latencies: Vec<f64> = samples
        .iter()
        .filter_map(|s| s.settled.map(|(d, _)| d.as_secs_f64() * 1000.0))
        .collect();
    let slowest = latencies.iter().copied().fold(1.0, f64::max);
    let width = slowest / f64::from(BUCKETS);
    let mut counts = vec![0_u32; BUCKETS as usize];
    for ms in &latencies {
        // The slowest order falls at the upper edge: it goes into the last bucket.
        let bucket = ((ms / width) as usize).min(counts.len() - 1);
        counts[bucket] += 1;
    }
    let tallest = counts.iter().copied().max().unwrap_or(0).max(1);
    let mut chart = ChartBuilder::on(&bottom)
        .caption("Submit → settled latency", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..slowest * 1.02, 0..tallest + tallest / 10 + 1)?;
    chart
        .configure_mesh()
        .x_desc("milliseconds")
        .y_desc("orders")
        .draw()?;
    chart.draw_series(counts.iter().enumerate().map(|(i, n)| {
        let from = i as f64 * width;
        Rectangle::new([(from, 0), (from + width * 0.9, *n)], GREEN.filled())
    }))?;
    root.present()?;
    Ok(())
}

/// `(seconds since start, orders/s)` per bin, by when each order settled.
fn throughput(samples: &[Sample], wall: Duration) -> Vec<(f64, f64)> {
    let bins = usize::try_from(wall.as_millis() / BIN.as_millis()).unwrap_or(0) + 1;
    let mut counts = vec![0_u32; bins];
    for sample in samples {
        if let Some(at) = sample.settled_at {
            let bin = usize::try_from(at.as_millis() / BIN.as_millis()).unwrap_or(usize::MAX);
            if let Some(count) = counts.get_mut(bin) {
                *count += 1;
            }
        }
    }
    let bin = BIN.as_secs_f64();
    let end = wall.as_secs_f64();
    counts
        .into_iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let from = i as f64 * bin;
            // The last bin is cut short by the end of the run: its rate is over what it spans.
            let span = (end - from).min(bin);
            (span > 0.0).then(|| (from + span / 2.0, f64::from(n) / span))
        })
        .collect()
}
