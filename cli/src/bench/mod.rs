//! `jifen bench`: loads a running mesh with a realistic workload and reports throughput and
//! latency. Users are drawn among `--user-count` (seeded with idempotent credits), amounts are
//! random in 10..=1000 per line, and `--fail-pct` of the orders meet a user left short after
//! the pre-check (the bench spends the user's points elsewhere right after the submit), so
//! they are compensated — those where the order's deduct wins that race complete instead; `--seed` makes the run repeatable and `--warmup`
//! orders go first, untimed. Each order is submitted, then watched to its end. At the end the
//! bench checks that every balance and quota moved by exactly the completed orders (and the
//! purchases it made elsewhere), prints the report, and ends with one line for scripts; the
//! exit status is non-zero when the check fails.

mod ledgers;
mod plot;
mod report;
mod workload;

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use jifen_proto::v1::mall_service_client::MallServiceClient;
use jifen_proto::v1::{OrderState, SubmitOrderLine, SubmitOrderRequest, WatchOrderRequest};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use ledgers::{Expected, Ledgers, Pair};
use report::{Figures, Sample};
use workload::{Draw, PlannedOrder, Shape};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The mall's gRPC endpoint; several, comma-separated, for replicas: orders are spread
    /// over them in turn, each watched where it was submitted.
    #[arg(long, default_value = "http://127.0.0.1:50051", value_delimiter = ',')]
    mall: Vec<String>,
    /// The portal's gRPC endpoint, to find the channels.
    #[arg(long, default_value = "http://127.0.0.1:50052")]
    portal: String,
    #[command(flatten)]
    tls: jifen_mesh::tls::TlsArgs,
    /// Orders to submit (timed).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    orders: u64,
    /// Orders in flight at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    concurrency: u64,
    /// Channels (lines) per order.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    channels_per_order: u64,
    /// Users per channel the orders are drawn from (seeded with idempotent credits).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    user_count: u64,
    /// Percent of the orders whose user is left short at one channel (they are compensated).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=100))]
    fail_pct: u64,
    /// Seed of the workload: the same seed draws the same orders.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Orders run first and not timed.
    #[arg(long, default_value_t = 0)]
    warmup: u64,
    /// Also write every figure to this file, as JSON.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Also draw settled orders per second over the run and the latency distribution into
    /// this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<std::path::PathBuf>,
    /// How the orders take points (DESIGN §12): `saga` draws lines from the channels that
    /// deduct, `tcc` from those that hold (`--holding`), `mixed` one held line and the others
    /// deducted.
    #[arg(long, value_enum, default_value_t = Mode::Saga)]
    mode: Mode,
    /// The channels whose connectors declare holds (as `jifen dev --holding`).
    #[arg(long, value_delimiter = ',', default_value = "gamma")]
    holding: Vec<String>,
}

/// How a run's orders take points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Saga,
    Tcc,
    Mixed,
}

pub async fn run(args: BenchArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let tls = args.tls.client()?;
    let ledgers = Arc::new(Ledgers::connect(&args.portal, tls.as_ref()).await?);
    let per_order = usize::try_from(args.channels_per_order)?;
    let (held, plain): (Vec<usize>, Vec<usize>) = (0..ledgers.ids.len())
        .partition(|i| args.holding.iter().any(|h| h.trim() == ledgers.ids[*i]));
    let (first, rest, needed) = match args.mode {
        Mode::Saga => (&plain, &plain, per_order),
        Mode::Tcc => (&held, &held, per_order),
        Mode::Mixed if per_order < 2 => {
            bail!(
                "--mode mixed puts one held line and at least one deducted line in each order: --channels-per-order 2 or more"
            )
        }
        Mode::Mixed => (&held, &plain, 1),
    };
    if first.len() < needed || rest.len() < per_order.saturating_sub(needed).max(1) {
        bail!(
            "--mode {:?} with --channels-per-order {per_order} needs more channels: the portal lists {} that hold ({}) and {} that deduct (jifen dev --channels and --holding set them)",
            args.mode,
            held.len(),
            held.iter()
                .map(|i| ledgers.ids[*i].as_str())
                .collect::<Vec<_>>()
                .join(", "),
            plain.len()
        );
    }
    let mut mall = Vec::with_capacity(args.mall.len());
    for endpoint in &args.mall {
        let channel = jifen_mesh::tls_io::GrpcTarget::new(endpoint, tls.as_ref())?
            .connect()
            .await
            .with_context(|| format!("cannot reach the mall at {endpoint}"))?;
        mall.push(MallServiceClient::new(channel));
    }
    let run_id = jifen_mesh::time::now_unix_ms();
    let mut draw = Draw::new(args.seed);
    let shape = |orders: u64| Shape {
        orders: usize::try_from(orders).unwrap_or(usize::MAX),
        first,
        rest,
        per_order,
        user_count: args.user_count,
        fail_pct: args.fail_pct,
    };
    let warmup = workload::plan(&mut draw, shape(args.warmup), &format!("warm-{run_id}"));
    let timed = workload::plan(&mut draw, shape(args.orders), &format!("bench-{run_id}"));
    let pairs: BTreeSet<Pair> = warmup
        .iter()
        .chain(&timed)
        .flat_map(|o| o.lines.iter().map(|l| (l.channel, l.user.clone())))
        .collect();
    eprintln!(
        "bench: seeding {} user account(s) over {} channel(s)",
        pairs.len(),
        ledgers.ids.len()
    );
    ledgers.seed(&pairs).await?;
    let mut needed = std::collections::BTreeMap::new();
    for line in warmup.iter().chain(&timed).flat_map(|o| &o.lines) {
        *needed.entry(line.channel).or_insert(0_i64) += line.points;
    }
    ledgers.grant_quota(&needed, run_id).await?;
    let concurrency = usize::try_from(args.concurrency)?;
    if !warmup.is_empty() {
        eprintln!("bench: {} warm-up orders", warmup.len());
        let (samples, _) = load(&mall, &ledgers, warmup, concurrency, &shutdown).await?;
        eprintln!();
        drop(samples);
    }
    let before = ledgers.balances(&pairs).await?;
    let quota_before = ledgers.quota_used().await?;
    eprintln!(
        "bench: {} {:?} orders, {} at once, {per_order} channel(s) each, {} users, {}% short, seed {}, against {}",
        timed.len(),
        args.mode,
        args.concurrency,
        args.user_count,
        args.fail_pct,
        args.seed,
        args.mall.join(", ")
    );
    let started = Instant::now();
    let (samples, expected) = load(&mall, &ledgers, timed, concurrency, &shutdown).await?;
    let wall = started.elapsed();
    eprintln!();
    let after = ledgers.balances(&pairs).await?;
    let quota_after = ledgers.quota_used().await?;
    let mismatches = ledgers::mismatches(
        &ledgers.ids,
        &before,
        &after,
        &quota_before,
        &quota_after,
        &expected,
    );
    let figures = Figures::new(&samples, wall, mismatches);
    // A plot that cannot be drawn does not hide the figures: it fails the run after them.
    let plotted = args.plot.as_ref().map(|path| {
        plot::draw(path, &samples, wall)
            .inspect(|()| eprintln!("plot             {}", path.display()))
    });
    figures.print();
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&figures.json())?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if !figures.invariants_ok() {
        bail!("the ledgers do not add up to the settled orders");
    }
    plotted.transpose()?;
    Ok(())
}

/// Runs `orders` at `concurrency` to their end; returns how each went and what the ledgers
/// must show for it.
async fn load(
    malls: &[MallServiceClient<Channel>],
    ledgers: &Arc<Ledgers>,
    orders: Vec<PlannedOrder>,
    concurrency: usize,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Vec<Sample>, Expected)> {
    let total = orders.len();
    let limit = Arc::new(Semaphore::new(concurrency.max(1)));
    let (submitted, settled) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for (order, mall) in orders.into_iter().zip(malls.iter().cycle()) {
        let (mall, ledgers, limit) = (mall.clone(), ledgers.clone(), limit.clone());
        let (submitted, settled) = (submitted.clone(), settled.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let (sample, spent) = one_order(mall, &ledgers, &order, &submitted, started).await;
            settled.fetch_add(1, Ordering::Relaxed);
            (order, sample, spent)
        });
    }
    let mut samples = Vec::with_capacity(total);
    let mut expected = Expected::default();
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(joined) => {
                    let (order, sample, spent) = joined?;
                    account(&mut expected, &order, &sample, spent);
                    samples.push(sample);
                }
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
    Ok((samples, expected))
}

/// What an order moves: its lines if it completed, and what was spent elsewhere.
fn account(
    expected: &mut Expected,
    order: &PlannedOrder,
    sample: &Sample,
    spent: Option<(Pair, i64)>,
) {
    if matches!(sample.settled, Some((_, OrderState::Completed))) {
        for line in &order.lines {
            *expected
                .spent
                .entry((line.channel, line.user.clone()))
                .or_default() += line.points;
            *expected.quota.entry(line.channel).or_default() += line.points;
        }
    }
    if let Some((pair, points)) = spent {
        *expected.spent.entry(pair).or_default() += points;
    }
}

async fn one_order(
    mut mall: MallServiceClient<Channel>,
    ledgers: &Ledgers,
    order: &PlannedOrder,
    submitted: &AtomicUsize,
    run_started: Instant,
) -> (Sample, Option<(Pair, i64)>) {
    let request = SubmitOrderRequest {
        order_id: order.order_id.clone(),
        customer_id: "bench".to_owned(),
        lines: order
            .lines
            .iter()
            .map(|l| SubmitOrderLine {
                channel_id: ledgers.ids[l.channel].clone(),
                user_id: l.user.clone(),
                points: l.points,
            })
            .collect(),
    };
    let start = Instant::now();
    let mut sample = Sample::default();
    if let Err(status) = mall.submit_order(request).await {
        sample.error = Some(format!("{:?}: {}", status.code(), status.message()));
        return (sample, None);
    }
    sample.submit = Some(start.elapsed());
    submitted.fetch_add(1, Ordering::Relaxed);
    // The user spends its points elsewhere right after the pre-check passed.
    let spent = match order.short {
        Some(index) => {
            let line = &order.lines[index];
            let key = format!("{}-elsewhere", order.order_id);
            // Leave one point less than the line needs: later orders of this user still fit.
            let keep = line.points - 1;
            let points = ledgers
                .spend_elsewhere(line.channel, &line.user, keep, &key)
                .await;
            Some(((line.channel, line.user.clone()), points))
        }
        None => None,
    };
    let mut stream = match mall
        .watch_order(WatchOrderRequest {
            order_id: order.order_id.clone(),
        })
        .await
    {
        Ok(stream) => stream.into_inner(),
        Err(status) => {
            sample.error = Some(format!("watch: {}", status.message()));
            return (sample, spent);
        }
    };
    while let Some(update) = stream.next().await {
        match update.map(|u| u.order) {
            Ok(Some(watched)) => {
                let state = watched.state();
                if matches!(state, OrderState::Completed | OrderState::Cancelled) {
                    sample.settled = Some((start.elapsed(), state));
                    sample.settled_at = Some(run_started.elapsed());
                    // The mall ends the stream after the settled order: read it to its end
                    // rather than reset it, as a well-behaved client does (a client resetting
                    // streams by the thousand is what HTTP/2 servers shield themselves from).
                    while let Some(Ok(_)) = stream.next().await {}
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
    (sample, spent)
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
