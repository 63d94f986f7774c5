//! `jifen admin`: the operator's calls from a terminal, over the mall's admin gRPC API (the same
//! code the console uses). The token comes from `JIFEN_ADMIN_TOKEN` or `--token-file`; tables
//! for people, `--json` for scripts. Exit status 0 when everything asked was done, 1 when the
//! mall refused something (each item says why), 2 when it could not be asked at all.

mod channels;
mod render;
mod statements;

use std::path::PathBuf;
use std::time::Duration;

use jifen_proto::v1::admin_service_client::AdminServiceClient;
use jifen_proto::v1::mall_service_client::MallServiceClient;
use jifen_proto::v1::{
    CompensateOrderRequest, DiscardDeadLetterRequest, GetDeadLetterRequest, GetOrderRequest,
    ListDeadLettersRequest, ListOrdersRequest, ListStuckOrdersRequest, OrderState,
    ReconcileRequest, RecordDeductOutcomeRequest, RecordManualRefundRequest,
    RedriveDeadLetterRequest, RetryOrderRequest, SettleConfirmingOrderRequest,
};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// The mall's gRPC endpoint.
    #[arg(
        long,
        env = "JIFEN_MALL_ENDPOINT",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    mall: String,
    /// The admin token (as the mall was given it).
    #[arg(long, env = "JIFEN_ADMIN_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Read the admin token from this file instead.
    #[arg(long, env = "JIFEN_ADMIN_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    tls: jifen_mesh::tls::TlsArgs,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AdminCommand {
    /// Orders: list, show, stuck, compensate, retry, and settle what a weak channel left.
    #[command(subcommand)]
    Orders(OrdersCommand),
    /// Dead letters: list, show, redrive, discard.
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(DeadLettersCommand),
    /// Channels: health, backlog and pauses; pause, resume, maintenance windows, automatic
    /// redrive.
    #[command(subcommand)]
    Channels(channels::ChannelsCommand),
    /// Compare a partner's daily statement (CSV) with Jifen's books for that channel and day;
    /// every difference by kind with what to do; the report is kept. Exits 1 on differences.
    ReconcileStatement(statements::StatementArgs),
    /// Statement reports kept: list, show.
    #[command(subcommand)]
    Statements(statements::StatementsCommand),
    /// Compare the mall's orders with the channels' and the portal's ledgers; exits 1 when
    /// any mismatch is found.
    Reconcile {
        /// One order; without it, every order created in the last `--since`.
        #[arg(long)]
        order: Option<String>,
        /// How far back (`30m`, `24h`), when no --order is given.
        #[arg(long, default_value = "24h", value_parser = jifen_mesh::config::parse_duration)]
        since: Duration,
    },
}

#[derive(Debug, clap::Subcommand)]
enum OrdersCommand {
    /// Newest first.
    List {
        /// PENDING, COMPENSATING, COMPLETED or CANCELLED.
        #[arg(long)]
        state: Option<String>,
        /// Only orders flagged for an operator.
        #[arg(long)]
        attention: bool,
        #[arg(long, default_value_t = 20)]
        limit: i32,
        /// Where the previous page ended (printed under it).
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// One order: lines, quotas, history.
    Show { order_id: String },
    /// Unsettled orders older than `--older-than`.
    Stuck {
        #[arg(long, default_value = "10m", value_parser = jifen_mesh::config::parse_duration)]
        older_than: Duration,
        #[arg(long, default_value_t = 50)]
        limit: i32,
    },
    /// Refund everything the order holds and cancel it.
    Compensate {
        order_id: String,
        #[arg(long)]
        note: String,
    },
    /// Clear the order's needs-attention flag, with a note for its history.
    ClearFlag {
        order_id: String,
        #[arg(long)]
        note: String,
    },
    /// Send the order's open commands again.
    Retry {
        order_id: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Record what a deduct whose outcome is unknown really did at its channel.
    RecordOutcome {
        order_id: String,
        #[arg(long)]
        channel: String,
        #[arg(long)]
        user: String,
        /// The channel took the points (else: it did not).
        #[arg(long)]
        deducted: bool,
        #[arg(long)]
        note: String,
    },
    /// Record a refund made by hand at a channel without a refund call.
    ManualRefund {
        order_id: String,
        #[arg(long)]
        channel: String,
        #[arg(long)]
        user: String,
        #[arg(long)]
        note: String,
    },
    /// Settle by hand an order that confirms its holds (CONFIRMING), once its ledgers agree:
    /// --completed when every hold is spent there, --cancelled when everything it took was
    /// given back.
    Settle {
        order_id: String,
        #[arg(
            long,
            conflicts_with = "cancelled",
            required_unless_present = "cancelled"
        )]
        completed: bool,
        #[arg(long)]
        cancelled: bool,
        #[arg(long)]
        note: String,
    },
}

#[derive(Debug, clap::Subcommand)]
enum DeadLettersCommand {
    /// Open dead letters, newest first.
    List {
        #[arg(long, default_value = "")]
        order: String,
        #[arg(long, default_value = "")]
        consumer: String,
        #[arg(long, default_value_t = 50)]
        limit: i32,
    },
    /// One dead letter with its headers, error and payload.
    Show { id: String },
    /// Send dead letters to their subjects again; a result per id.
    Redrive {
        #[arg(required = true)]
        ids: Vec<String>,
        /// Why they are sent again; kept in their orders' history.
        #[arg(long)]
        note: String,
    },
    /// Close a dead letter without sending it, keeping the note in its order's history.
    Discard {
        id: String,
        #[arg(long)]
        note: String,
    },
}

/// Why the command could not ask the mall at all (exit 2).
#[derive(Debug, thiserror::Error)]
enum AdminError {
    #[error("no admin token: set JIFEN_ADMIN_TOKEN or give --token-file")]
    NoToken,
    #[error("cannot read the token file {0}: {1}")]
    TokenFile(PathBuf, std::io::Error),
    #[error("invalid mall endpoint {0:?}: {1}")]
    Endpoint(String, String),
    #[error("cannot reach the mall at {0}: {1}")]
    Unreachable(String, String),
    #[error("unknown state {0:?}: use PENDING, COMPENSATING, COMPLETED or CANCELLED")]
    State(String),
    #[error("{0}")]
    Input(String),
}

struct Clients {
    admin: AdminServiceClient<Channel>,
    mall: MallServiceClient<Channel>,
    /// Only the admin calls need it (`orders list` and `show` read MallService).
    token: Option<String>,
}

impl Clients {
    fn authed<T>(&self, message: T) -> Result<Request<T>, AdminError> {
        let token = self.token.as_deref().ok_or(AdminError::NoToken)?;
        let mut request = Request::new(message);
        if let Ok(value) = format!("Bearer {token}").parse() {
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

/// Runs the command; returns the exit status.
pub async fn run(args: AdminArgs) -> i32 {
    let clients = match connect(&args).await {
        Ok(clients) => clients,
        Err(error) => {
            eprintln!("jifen admin: {error}");
            return 2;
        }
    };
    match execute(&args, clients).await {
        Ok(status) => status,
        Err(error) => {
            eprintln!("jifen admin: {error}");
            2
        }
    }
}

async fn connect(args: &AdminArgs) -> Result<Clients, AdminError> {
    let token = match (&args.token_file, &args.token) {
        (Some(path), _) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| AdminError::TokenFile(path.clone(), e))?
                .trim()
                .to_owned(),
        ),
        (None, token) => token.clone(),
    };
    let tls = args
        .tls
        .client()
        .map_err(|e| AdminError::Endpoint(args.mall.clone(), e.to_string()))?;
    let channel = jifen_mesh::tls_io::GrpcTarget::new(&args.mall, tls.as_ref())
        .map_err(|e| AdminError::Endpoint(args.mall.clone(), e.to_string()))?
        .timeouts(Duration::from_secs(5), Duration::from_secs(60))
        .connect()
        .await
        .map_err(|e| {
            AdminError::Unreachable(args.mall.clone(), jifen_mesh::telemetry::chain(&e))
        })?;
    Ok(Clients {
        admin: AdminServiceClient::new(channel.clone()),
        mall: MallServiceClient::new(channel),
        token,
    })
}

/// What the mall said no to, in words an operator can act on.
fn refused(status: &Status) -> String {
    match status.code() {
        Code::Unauthenticated => "the mall refused the token (check JIFEN_ADMIN_TOKEN)".to_owned(),
        Code::Unavailable => format!("the mall is unavailable: {}", status.message()),
        _ => status.message().to_owned(),
    }
}

fn parse_state(raw: &str) -> Result<OrderState, AdminError> {
    OrderState::from_str_name(&format!("ORDER_STATE_{}", raw.to_ascii_uppercase()))
        .filter(|s| *s != OrderState::Unspecified)
        .ok_or_else(|| AdminError::State(raw.to_owned()))
}

async fn execute(args: &AdminArgs, clients: Clients) -> Result<i32, AdminError> {
    let json = args.json;
    let mut admin = clients.admin.clone();
    let mut mall = clients.mall.clone();
    // Reconcile's finding, for the exit status: 1 when the books disagree.
    let mut mismatched = false;
    let outcome: Result<(), Status> = match &args.command {
        AdminCommand::ReconcileStatement(statement) => {
            statements::reconcile(statement, &clients, json)
                .await?
                .map(|clean| mismatched = !clean)
        }
        AdminCommand::Statements(command) => statements::execute(command, &clients, json)
            .await?
            .map(|clean| mismatched = !clean),
        AdminCommand::Channels(command) => {
            channels::execute(command, &clients, json)
                .await?
                .map(|all_well| {
                    // A channel down is a finding, like a reconciliation's mismatch.
                    mismatched = !all_well;
                })
        }
        AdminCommand::Orders(OrdersCommand::List {
            state,
            attention,
            limit,
            page_token,
        }) => {
            let state = state.as_deref().map(parse_state).transpose()?;
            mall.list_orders(ListOrdersRequest {
                state: state.unwrap_or(OrderState::Unspecified).into(),
                page_size: *limit,
                page_token: page_token.clone(),
                needs_attention: *attention,
            })
            .await
            .map(|r| {
                let r = r.into_inner();
                render::orders(&r.orders, &r.next_page_token, json);
            })
        }
        AdminCommand::Orders(OrdersCommand::Show { order_id }) => mall
            .get_order(GetOrderRequest {
                order_id: order_id.clone(),
            })
            .await
            .map(|r| render::order(r.into_inner().order, json)),
        AdminCommand::Orders(OrdersCommand::Stuck { older_than, limit }) => admin
            .list_stuck_orders(clients.authed(ListStuckOrdersRequest {
                older_than_seconds: i64::try_from(older_than.as_secs()).unwrap_or(i64::MAX),
                page_size: *limit,
                page_token: String::new(),
            })?)
            .await
            .map(|r| {
                let r = r.into_inner();
                render::orders(&r.orders, &r.next_page_token, json);
            }),
        AdminCommand::Orders(OrdersCommand::Compensate { order_id, note }) => admin
            .compensate_order(clients.authed(CompensateOrderRequest {
                order_id: order_id.clone(),
                reason: note.clone(),
            })?)
            .await
            .map(|r| render::order(r.into_inner().order, json)),
        AdminCommand::Orders(OrdersCommand::ClearFlag { order_id, note }) => admin
            .clear_attention(clients.authed(jifen_proto::v1::ClearAttentionRequest {
                order_id: order_id.clone(),
                note: note.clone(),
            })?)
            .await
            .map(|r| render::order(r.into_inner().order, json)),
        AdminCommand::Orders(OrdersCommand::Retry { order_id, note }) => admin
            .retry_order(clients.authed(RetryOrderRequest {
                order_id: order_id.clone(),
                note: note.clone(),
            })?)
            .await
            .map(|r| render::order(r.into_inner().order, json)),
        AdminCommand::Orders(OrdersCommand::RecordOutcome {
            order_id,
            channel,
            user,
            deducted,
            note,
        }) => admin
            .record_deduct_outcome(clients.authed(RecordDeductOutcomeRequest {
                order_id: order_id.clone(),
                channel_id: channel.clone(),
                user_id: user.clone(),
                deducted: *deducted,
                note: note.clone(),
            })?)
            .await
            .map(|r| render::order(r.into_inner().order, json)),
        AdminCommand::Orders(OrdersCommand::ManualRefund {
            order_id,
            channel,
            user,
            note,
        }) => admin
            .record_manual_refund(clients.authed(RecordManualRefundRequest {
                order_id: order_id.clone(),
                channel_id: channel.clone(),
                user_id: user.clone(),
                note: note.clone(),
            })?)
            .await
            .map(|r| render::order(r.into_inner().order, json)),
        AdminCommand::Orders(OrdersCommand::Settle {
            order_id,
            completed,
            cancelled: _,
            note,
        }) => admin
            .settle_confirming_order(clients.authed(SettleConfirmingOrderRequest {
                order_id: order_id.clone(),
                completed: *completed,
                note: note.clone(),
            })?)
            .await
            .map(|r| render::order(r.into_inner().order, json)),
        AdminCommand::DeadLetters(DeadLettersCommand::List {
            order,
            consumer,
            limit,
        }) => admin
            .list_dead_letters(clients.authed(ListDeadLettersRequest {
                order_id: order.clone(),
                consumer: consumer.clone(),
                page_size: *limit,
                page_token: String::new(),
            })?)
            .await
            .map(|r| render::dead_letters(&r.into_inner().dead_letters, json)),
        AdminCommand::DeadLetters(DeadLettersCommand::Show { id }) => admin
            .get_dead_letter(clients.authed(GetDeadLetterRequest { id: id.clone() })?)
            .await
            .map(|r| render::dead_letter(r.into_inner().dead_letter, json)),
        AdminCommand::DeadLetters(DeadLettersCommand::Redrive { ids, note }) => {
            let mut results = Vec::with_capacity(ids.len());
            for id in ids {
                let result = admin
                    .redrive_dead_letter(clients.authed(RedriveDeadLetterRequest {
                        id: id.clone(),
                        note: note.clone(),
                    })?)
                    .await
                    .map(drop)
                    .map_err(|s| refused(&s));
                results.push((id.clone(), result));
            }
            render::results("redrive", &results, json);
            let failed = results.iter().filter(|(_, r)| r.is_err()).count();
            return Ok(i32::from(failed > 0));
        }
        AdminCommand::DeadLetters(DeadLettersCommand::Discard { id, note }) => admin
            .discard_dead_letter(clients.authed(DiscardDeadLetterRequest {
                id: id.clone(),
                note: note.clone(),
            })?)
            .await
            .map(|_| render::results("discard", &[(id.clone(), Ok(()))], json)),
        AdminCommand::Reconcile { order, since } => {
            let now = jifen_mesh::time::now_unix_ms();
            let since_ms = i64::try_from(since.as_millis()).unwrap_or(i64::MAX);
            admin
                .reconcile(clients.authed(ReconcileRequest {
                    order_id: order.clone().unwrap_or_default(),
                    from_unix_ms: now.saturating_sub(since_ms),
                    to_unix_ms: now.saturating_add(1),
                })?)
                .await
                .map(|r| {
                    let answer = r.into_inner();
                    mismatched = !answer.mismatches.is_empty();
                    render::reconcile(&answer, json)
                })
        }
    };
    match outcome {
        Ok(()) if mismatched => Ok(1),
        Ok(()) => Ok(0),
        Err(status) if matches!(status.code(), Code::Unavailable | Code::Unauthenticated) => {
            eprintln!("jifen admin: {}", refused(&status));
            Ok(2)
        }
        Err(status) => {
            eprintln!("jifen admin: {}", refused(&status));
            Ok(1)
        }
    }
}
