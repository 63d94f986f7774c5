//! What `jifen dev` prints once the mesh is up: where everything is, how to reach it, and the
//! commands to try — runnable as printed.

use std::net::SocketAddr;
use std::path::Path;

use crate::dev::{DEMO_POINTS, DEMO_QUOTA, DEMO_USERS};

/// What the start-up banner names.
pub(crate) struct Banner<'a> {
    pub(crate) data_dir: &'a Path,
    pub(crate) nats: &'a str,
    pub(crate) nats_ops_seed: &'a Path,
    pub(crate) mall: SocketAddr,
    pub(crate) portal: SocketAddr,
    pub(crate) channels: &'a [(&'a str, &'a str, SocketAddr)],
    /// The channels whose connectors declare holds (TCC).
    pub(crate) holding: &'a [String],
    pub(crate) http: &'a crate::dev_http::HttpDemo,
    pub(crate) console: Option<SocketAddr>,
    pub(crate) admin_token: &'a str,
    pub(crate) tls: &'a crate::dev_tls::DevTls,
}

pub(crate) fn print_banner(banner: &Banner<'_>) {
    let Banner {
        data_dir,
        nats,
        nats_ops_seed,
        mall,
        portal,
        channels,
        holding,
        http,
        console,
        admin_token,
        tls,
    } = *banner;
    let g = tls.grpcurl();
    let (first_id, _, first) = channels[0];
    let second_id = channels.get(1).map_or(first_id, |c| c.0);
    println!();
    println!(
        "Jifen dev is running (Ctrl-C stops it). Data: {}",
        data_dir.display()
    );
    println!();
    println!("  mall     {mall}   jifen.v1.MallService");
    println!("  portal   {portal}   jifen.v1.PortalService");
    for (channel_id, name, addr) in channels {
        let takes = if holding.iter().any(|h| h.trim() == *channel_id) {
            "; holds points: lines taken by TCC"
        } else {
            ""
        };
        println!("  {channel_id:<8} {addr}   jifen.v1.ChannelService  ({name}{takes})");
    }
    println!(
        "  {:<8} {}   REST points API, driven through the adapter config {}",
        http.channel_id,
        http.addr,
        http.config.display()
    );
    println!(
        "  nats     {nats}   JetStream (streams JIFEN_CMD, JIFEN_EVT); an NKEY identity per process, the nats CLI as ops: nats -s {nats} --nkey {}",
        nats_ops_seed.display()
    );
    println!();
    println!(
        "Demo users {} hold {DEMO_POINTS} points in every channel (the REST one too); each channel has {DEMO_QUOTA} quota.",
        DEMO_USERS.join(", ")
    );
    println!("Try (grpcurl; `buf curl --protocol grpc --http2-prior-knowledge` works too):");
    println!();
    println!(
        "  grpcurl {g} -d '{{\"order_id\":\"demo-1\",\"customer_id\":\"c-1\",\"lines\":[{{\"channel_id\":\"{first_id}\",\"user_id\":\"alice\",\"points\":300}},{{\"channel_id\":\"{second_id}\",\"user_id\":\"alice\",\"points\":200}}]}}' {mall} jifen.v1.MallService/SubmitOrder"
    );
    println!(
        "  grpcurl {g} -d '{{\"order_id\":\"demo-1\"}}' {mall} jifen.v1.MallService/WatchOrder"
    );
    println!("  grpcurl {g} -d '{{\"order_id\":\"demo-1\"}}' {mall} jifen.v1.MallService/GetOrder");
    println!("  grpcurl {g} -d '{{\"page_size\":10}}' {mall} jifen.v1.MallService/ListOrders");
    println!(
        "  grpcurl {g} -d '{{\"user_id\":\"alice\"}}' {first} jifen.v1.ChannelService/GetUserPoints"
    );
    println!("  grpcurl {g} {portal} jifen.v1.PortalService/ListChannels");
    println!(
        "  curl -H 'X-Api-Key: jifen-demo-key' http://{}/v1/members/alice",
        http.addr
    );
    println!("  grpcurl {g} {mall} grpc.health.v1.Health/Check");
    println!();
    if let Some(console) = console {
        println!("Operator's console: http://{console}/  (log in with the admin token below)");
        println!();
    }
    println!("Admin (jifen admin, or AdminService; runbook in docs/operations.md):");
    println!("  export JIFEN_ADMIN_TOKEN={admin_token}");
    if let (Some(ca), Some(cert), Some(key)) =
        (&tls.args.tls_ca, &tls.args.tls_cert, &tls.args.tls_key)
    {
        println!(
            "  export JIFEN_MALL_ENDPOINT=https://{mall} JIFEN_TLS_CA={} JIFEN_TLS_CERT={} JIFEN_TLS_KEY={}",
            ca.display(),
            cert.display(),
            key.display()
        );
    }
    let jifen = runnable_self();
    println!("  {jifen} admin orders list --attention");
    println!("  {jifen} admin dead-letters list");
    println!("  {jifen} admin channels list");
    println!(
        "  grpcurl {g} -H \"authorization: Bearer $JIFEN_ADMIN_TOKEN\" -d '{{}}' {mall} jifen.v1.AdminService/ListDeadLetters"
    );
    println!(
        "  grpcurl {g} -H \"authorization: Bearer $JIFEN_ADMIN_TOKEN\" -d '{{\"older_than_seconds\":60}}' {mall} jifen.v1.AdminService/ListStuckOrders"
    );
    println!();
    if tls.on() {
        println!(
            "Load it: {jifen} bench --mall https://{mall} --portal https://{portal} --orders 1000 --concurrency 32  (with the exports above)"
        );
    } else {
        println!("Load it: {jifen} bench --orders 1000 --concurrency 32");
    }
    println!();
}

/// How a new shell runs this very binary: `jifen` when that is what the PATH finds, else its
/// full path (after `deploy/local/dev.sh` it lives in the build folder, on no PATH).
fn runnable_self() -> String {
    let Ok(me) = std::env::current_exe().and_then(std::fs::canonicalize) else {
        return "jifen".to_owned();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .any(|dir| std::fs::canonicalize(dir.join("jifen")).is_ok_and(|found| found == me))
    });
    if on_path {
        "jifen".to_owned()
    } else {
        me.display().to_string()
    }
}
