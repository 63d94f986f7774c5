//! `jifen channel-check`: runs [`jifen_channel::check`] against a live channel and reports it:
//! a table (or `--json`), the capability block to paste into the channel's config, and the
//! exit status 0 (all six guarantees hold, and with `--holds` the six of holds), 1 (one or more
//! do not), 2 (it could not run).

use jifen_channel::check::{self, GUARANTEES, Report};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The channel's ChannelService (gRPC) endpoint.
    #[arg(long, required_unless_present = "adapter_config")]
    endpoint: Option<String>,
    /// Or: a REST points API, through its adapter config (it needs a [balance] call).
    #[arg(long, conflicts_with = "endpoint")]
    adapter_config: Option<std::path::PathBuf>,
    /// A test user of the channel with at least `--points` points; everything taken is given
    /// back.
    #[arg(long)]
    user: String,
    /// Points per deduct.
    #[arg(long, default_value_t = 1)]
    points: i64,
    /// Print `{"guarantees": {...}, "capabilities": {...}, "checks": [...]}` instead of a table.
    #[arg(long)]
    json: bool,
    /// Print every request to the REST API and its answer as they happen (to stderr), with
    /// secrets, tokens and signatures redacted: what a person needs while writing a config.
    #[arg(long, requires = "adapter_config")]
    trace: bool,
    /// Also check the channel's holds (TCC: freeze, confirm, cancel; DESIGN §12). The confirmed
    /// hold spends `--points` for good: holds cannot give back what a confirm spent.
    #[arg(long)]
    holds: bool,
    #[command(flatten)]
    tls: jifen_mesh::tls::TlsArgs,
}

/// Runs the check; returns the process's exit status.
pub async fn run(args: CheckArgs) -> i32 {
    let prefix = format!("jifen-check-{}-", jifen_mesh::time::now_unix_ms());
    let target = match (&args.endpoint, &args.adapter_config) {
        (_, Some(config)) => {
            let trace: Option<jifen_channel::adapter::evidence::Trace> = args.trace.then(|| {
                std::sync::Arc::new(|exchange: &jifen_mesh::connector::Exchange| {
                    let status = match exchange.status {
                        0 => "no answer".to_owned(),
                        code => code.to_string(),
                    };
                    eprintln!(
                        "── {} ──\n{}\n── answered {status} ──\n{}\n",
                        exchange.call,
                        exchange.request.trim_end(),
                        exchange.answer
                    );
                }) as jifen_channel::adapter::evidence::Trace
            });
            check::Target::http_traced(config, trace)
        }
        (Some(endpoint), None) => match args.tls.client() {
            Ok(tls) => check::Target::grpc(endpoint, tls.as_ref()).await,
            Err(error) => Err(check::CheckError::Endpoint {
                endpoint: endpoint.clone(),
                reason: error.to_string(),
            }),
        },
        // clap requires one of the two; this only guards a change of the flags.
        (None, None) => Err(check::CheckError::Endpoint {
            endpoint: String::new(),
            reason: "give --endpoint or --adapter-config".to_owned(),
        }),
    };
    let report = match target {
        Ok(target) => {
            let holds_target = args.holds.then(|| target.clone());
            match check::run_on(target, &args.user, args.points, &prefix).await {
                Ok(mut report) => match holds_target {
                    Some(target) => check::holds_on(target, &args.user, args.points, &prefix)
                        .await
                        .map(|holds| {
                            report.holds = Some(holds.unwrap_or_default());
                            report
                        }),
                    None => Ok(report),
                },
                Err(error) => Err(error),
            }
        }
        Err(error) => Err(error),
    };
    match report {
        Ok(report) => {
            if args.json {
                println!("{}", json(&report));
            } else {
                print_table(&report, &prefix);
            }
            let holds_fine = report
                .holds
                .as_ref()
                .is_none_or(|h| !h.is_empty() && h.iter().all(|f| f.holds));
            if report.all_hold() && holds_fine {
                0
            } else {
                1
            }
        }
        Err(error) => {
            eprintln!("channel-check: {error}");
            2
        }
    }
}

fn json(report: &Report) -> serde_json::Value {
    let guarantees: serde_json::Map<String, serde_json::Value> = GUARANTEES
        .iter()
        .map(|name| ((*name).to_owned(), report.holds(name).into()))
        .collect();
    let capabilities: serde_json::Map<String, serde_json::Value> = report
        .capabilities()
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).into()))
        .collect();
    serde_json::json!({
        "guarantees": guarantees,
        "capabilities": capabilities,
        "checks": report.findings.iter().map(|f| serde_json::json!({
            "guarantee": f.guarantee,
            "holds": f.holds,
            "saw": f.saw,
        })).collect::<Vec<_>>(),
        "holds": report.holds.as_ref().map(|holds| holds.iter().map(|f| serde_json::json!({
            "guarantee": f.guarantee,
            "holds": f.holds,
            "saw": f.saw,
        })).collect::<Vec<_>>()),
        "balance_before": report.balance_before,
        "balance_after": report.balance_after,
    })
}

fn print_table(report: &Report, prefix: &str) {
    println!("order ids under {prefix}*");
    for finding in &report.findings {
        let verdict = if finding.holds { "holds" } else { "MISSING" };
        println!("{:<18} {verdict}", finding.guarantee);
        for seen in &finding.saw {
            println!("{:<18}   {seen}", "");
        }
    }
    println!(
        "balance          {} before, {} after{}",
        report.balance_before,
        report.balance_after,
        if report.balance_before == report.balance_after {
            " (everything given back)"
        } else {
            " (NOT all given back: see above; give the difference back by hand)"
        }
    );
    match &report.holds {
        None => {}
        Some(holds) if holds.is_empty() => {
            println!(
                "holds            MISSING: the channel has no freeze call (it takes points by deduct only)"
            );
        }
        Some(holds) => {
            for finding in holds {
                let verdict = if finding.holds { "holds" } else { "MISSING" };
                println!("{:<28} {verdict}", finding.guarantee);
                for seen in &finding.saw {
                    println!("{:<28}   {seen}", "");
                }
            }
            println!("(the hold probes spent --points once, for good: a confirmed hold)");
        }
    }
    println!();
    println!("# capabilities to declare for this channel:");
    println!("[capabilities]");
    for (name, value) in report.capabilities() {
        println!("{name} = {value}");
    }
    if report
        .holds
        .as_ref()
        .is_some_and(|h| !h.is_empty() && h.iter().all(|f| f.holds))
    {
        println!("freeze = true");
    }
}
