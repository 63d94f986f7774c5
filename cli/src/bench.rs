//! `jifen bench`: N orders at concurrency C over K channels per order against a running mesh.
//! Each order is submitted and then watched to its end; the report gives orders per second and
//! the p50/p99 of submit latency and of submit-to-settled latency.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use jifen_proto::v1::mall_service_client::MallServiceClient;
use jifen_proto::v1::portal_service_client::PortalServiceClient;
use jifen_proto::v1::{
    ListChannelsRequest, OrderState, SubmitOrderLine, SubmitOrderRequest, WatchOrderRequest,
};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The mall's gRPC endpoint.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    mall: String,
    /// The portal's gRPC endpoint, to find the channels.
    #[arg(long, default_value = "http://127.0.0.1:50052")]
    portal: String,
    /// Orders to submit.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    orders: u64,
    /// Orders in flight at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    concurrency: u64,
    /// Channels (lines) per order.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    channels_per_order: u64,
    /// Users the orders are spread over (they must hold points in every channel).
    #[arg(long, value_delimiter = ',', default_value = "alice,bob,carol")]
    users: Vec<String>,
    /// Points per line.
    #[arg(long, default_value_t = 1)]
    points: i64,
}

#[derive(Debug, Default)]
struct Sample {
    submit: Option<Duration>,
    settled: Option<(Duration, OrderState)>,
    error: Option<String>,
}

pub async fn run(args: BenchArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let portal = Channel::from_shared(args.portal.clone())?
        .connect()
        .await
        .with_context(|| format!("cannot reach the portal at {}", args.portal))?;
    let channels: Vec<String> = PortalServiceClient::new(portal)
        .list_channels(ListChannelsRequest {})
        .await?
        .into_inner()
        .channels
        .into_iter()
        .map(|c| c.channel_id)
        .collect();
    let per_order = usize::try_from(args.channels_per_order)?;
    if channels.len() < per_order {
        bail!(
            "the portal lists {} channel(s); --channels-per-order {per_order} needs as many",
            channels.len()
        );
    }
    if args.users.is_empty() {
        bail!("--users names nobody");
    }
    let mall = Channel::from_shared(args.mall.clone())?
        .connect()
        .await
        .with_context(|| format!("cannot reach the mall at {}", args.mall))?;
    let mall = MallServiceClient::new(mall);
    let run_id = jifen_mesh::time::now_unix_ms();
    let limit = Arc::new(Semaphore::new(usize::try_from(args.concurrency)?));
    let (submitted, settled) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let total = usize::try_from(args.orders)?;
    eprintln!(
        "bench: {total} orders, {} at once, {per_order} channel(s) each, against {}",
        args.concurrency, args.mall
    );
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..total {
        let lines = (0..per_order)
            .map(|k| SubmitOrderLine {
                channel_id: channels[(i + k) % channels.len()].clone(),
                user_id: args.users[i % args.users.len()].clone(),
                points: args.points,
            })
            .collect();
        let request = SubmitOrderRequest {
            order_id: format!("bench-{run_id}-{i}"),
            customer_id: "bench".to_owned(),
            lines,
        };
        let (mall, limit) = (mall.clone(), limit.clone());
        let (submitted, settled) = (submitted.clone(), settled.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let sample = one_order(mall, request, &submitted).await;
            settled.fetch_add(1, Ordering::Relaxed);
            sample
        });
    }
    let mut samples = Vec::with_capacity(total);
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(sample) => samples.push(sample?),
                None => break,
            },
            _ = ticker.tick() => progress(&submitted, &settled, total, started),
            () = shutdown.cancelled() => {
                eprintln!();
                bail!("interrupted after {} settled orders", samples.len());
            }
        }
    }
    progress(&submitted, &settled, total, started);
    eprintln!();
    report(&samples, started.elapsed());
    Ok(())
}

async fn one_order(
    mut mall: MallServiceClient<Channel>,
    request: SubmitOrderRequest,
    submitted: &AtomicUsize,
) -> Sample {
    let order_id = request.order_id.clone();
    let start = Instant::now();
    let mut sample = Sample::default();
    if let Err(status) = mall.submit_order(request).await {
        sample.error = Some(format!("{:?}: {}", status.code(), status.message()));
        return sample;
    }
    sample.submit = Some(start.elapsed());
    submitted.fetch_add(1, Ordering::Relaxed);
    let mut stream = match mall.watch_order(WatchOrderRequest { order_id }).await {
        Ok(stream) => stream.into_inner(),
        Err(status) => {
            sample.error = Some(format!("watch: {}", status.message()));
            return sample;
        }
    };
    while let Some(update) = stream.next().await {
        match update.map(|u| u.order) {
            Ok(Some(order)) => {
                let state = order.state();
                if matches!(state, OrderState::Completed | OrderState::Cancelled) {
                    sample.settled = Some((start.elapsed(), state));
                    break;
                }
            }
            Ok(None) => {}
            Err(status) => {
                sample.error = Some(format!("watch: {}", status.message()));
                break;
            }
        }
    }
    sample
}

fn progress(submitted: &AtomicUsize, settled: &AtomicUsize, total: usize, started: Instant) {
    let done = settled.load(Ordering::Relaxed);
    let width = 30;
    let filled = done * width / total.max(1);
    eprint!(
        "\r[{}{}] submitted {}/{total}, settled {done}/{total}, {:.1}s ",
        "#".repeat(filled),
        "-".repeat(width - filled),
        submitted.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    let _ = std::io::stderr().flush();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64)).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(samples: &[Sample], elapsed: Duration) {
    let mut submit: Vec<Duration> = samples.iter().filter_map(|s| s.submit).collect();
    let mut settle: Vec<Duration> = samples
        .iter()
        .filter_map(|s| s.settled.map(|x| x.0))
        .collect();
    submit.sort();
    settle.sort();
    let completed = samples
        .iter()
        .filter(|s| matches!(s.settled, Some((_, OrderState::Completed))))
        .count();
    let cancelled = samples
        .iter()
        .filter(|s| matches!(s.settled, Some((_, OrderState::Cancelled))))
        .count();
    let errors: Vec<&String> = samples.iter().filter_map(|s| s.error.as_ref()).collect();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "orders           {} in {:.2}s",
        samples.len(),
        elapsed.as_secs_f64()
    );
    println!(
        "throughput       {:.1} settled orders/s",
        settle.len() as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
    );
    println!("completed        {completed}");
    println!("cancelled        {cancelled}");
    println!("failed submits   {}", errors.len());
    println!(
        "submit latency   p50 {:.1} ms   p99 {:.1} ms",
        ms(percentile(&submit, 50.0)),
        ms(percentile(&submit, 99.0))
    );
    println!(
        "to settled       p50 {:.1} ms   p99 {:.1} ms",
        ms(percentile(&settle, 50.0)),
        ms(percentile(&settle, 99.0))
    );
    if let Some(first) = errors.first() {
        println!("first error      {first}");
    }
}
