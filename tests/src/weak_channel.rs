//! A third-party points system as they often are (DESIGN §9), speaking `ChannelService`:
//! deducts are idempotent by key, but a refund of a key it never saw answers `NOT_FOUND` and
//! records nothing (no null compensation), so a deduct that arrives after its refund is
//! applied (no anti-hanging); rejections are not recorded. It can also be flaky: refuse
//! deducts for a while, fail calls before or after applying them (an answer lost on the way),
//! and answer slowly. An in-memory fake: it stands for another company's system, not for a
//! part of Jifen.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use jifen_proto::v1::channel_service_server::{ChannelService, ChannelServiceServer};
use jifen_proto::v1::{
    CreditPointsRequest, CreditPointsResponse, DeductPointsRequest, DeductPointsResponse,
    Deduction, DeductionState, GetDeductionRequest, GetDeductionResponse, GetUserPointsRequest,
    GetUserPointsResponse, RefundPointsRequest, RefundPointsResponse,
};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// How the fake misbehaves; every switch can change while it runs.
#[derive(Debug, Default)]
pub struct Faults {
    /// Deducts fail with `UNAVAILABLE` before anything is applied.
    pub refuse_deducts: AtomicBool,
    /// Per mille of calls that fail with `UNAVAILABLE` before applying anything.
    pub fail_before_permille: AtomicU32,
    /// Per mille of calls that apply, then fail with `UNAVAILABLE` (the answer is lost).
    pub fail_after_permille: AtomicU32,
    /// Most milliseconds a call waits before it is handled.
    pub max_delay_ms: AtomicU32,
    /// Deducts answer with one point more than they took (a broken integration).
    pub misreport_points: AtomicBool,
    /// A deduct sent again takes again (no idempotency by key).
    pub deducts_not_idempotent: AtomicBool,
    /// A refund sent again gives the points back again.
    pub refunds_repeat: AtomicBool,
    /// `GetDeduction` is not offered (UNIMPLEMENTED).
    pub no_query: AtomicBool,
    /// A refund of a key never deducted is answered (REFUNDED, 0 points) and recorded.
    pub null_compensation: AtomicBool,
    /// A refund of a key never deducted answers NOT_FOUND but is remembered, so a later deduct
    /// of the key is refused (anti-hanging without null compensation).
    pub tombstones: AtomicBool,
    /// A deduct of a key refunded with 0 points takes anyway (no anti-hanging even where a null
    /// compensation was recorded).
    pub hanging_deducts: AtomicBool,
    /// Points below 1 are refused with INVALID_ARGUMENT (the fake takes them otherwise).
    pub strict_points: AtomicBool,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    state: DeductionState,
    points: i64,
}

#[derive(Debug, Default)]
struct Book {
    balances: HashMap<String, i64>,
    deductions: HashMap<(String, String), Entry>,
    tombstones: std::collections::HashSet<(String, String)>,
    credited: i64,
}

#[derive(Debug)]
struct Fake {
    channel_id: String,
    book: Mutex<Book>,
    faults: std::sync::Arc<Faults>,
    dice: AtomicU64,
    deducts_applied: std::sync::Arc<AtomicU64>,
}

impl Fake {
    /// A cheap deterministic sequence in 0..1000 (no randomness crate for a test fake).
    fn roll(&self) -> u32 {
        let n = self
            .dice
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        let mixed = (n ^ (n >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        u32::try_from((mixed ^ (mixed >> 29)) % 1000).unwrap_or(0)
    }

    async fn misbehave_before(&self) -> Result<(), Status> {
        let max = self.faults.max_delay_ms.load(Ordering::Relaxed);
        if max > 0 {
            let wait = u64::from(self.roll() % (max + 1));
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        if self.roll() < self.faults.fail_before_permille.load(Ordering::Relaxed) {
            return Err(Status::unavailable("try again later"));
        }
        Ok(())
    }

    fn misbehave_after<T>(&self, answer: T) -> Result<Response<T>, Status> {
        if self.roll() < self.faults.fail_after_permille.load(Ordering::Relaxed) {
            return Err(Status::unavailable("gateway timeout"));
        }
        Ok(Response::new(answer))
    }

    fn deduction(&self, order_id: &str, user_id: &str, entry: Entry) -> Deduction {
        Deduction {
            order_id: order_id.to_owned(),
            channel_id: self.channel_id.clone(),
            user_id: user_id.to_owned(),
            points: entry.points,
            state: entry.state.into(),
            reason: String::new(),
            updated_at_unix_ms: 0,
            hold_expires_at_unix_ms: 0,
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[tonic::async_trait]
impl ChannelService for Fake {
    // A weak channel holds no points: it speaks only deducts and refunds.
    async fn freeze_points(
        &self,
        _: Request<jifen_proto::v1::FreezePointsRequest>,
    ) -> Result<Response<jifen_proto::v1::FreezePointsResponse>, Status> {
        Err(Status::unimplemented("no holds here"))
    }

    async fn confirm_freeze(
        &self,
        _: Request<jifen_proto::v1::ConfirmFreezeRequest>,
    ) -> Result<Response<jifen_proto::v1::ConfirmFreezeResponse>, Status> {
        Err(Status::unimplemented("no holds here"))
    }

    async fn cancel_freeze(
        &self,
        _: Request<jifen_proto::v1::CancelFreezeRequest>,
    ) -> Result<Response<jifen_proto::v1::CancelFreezeResponse>, Status> {
        Err(Status::unimplemented("no holds here"))
    }

    async fn get_user_points(
        &self,
        request: Request<GetUserPointsRequest>,
    ) -> Result<Response<GetUserPointsResponse>, Status> {
        let user_id = request.into_inner().user_id;
        let balance = self.book().balances.get(&user_id).copied();
        let balance = balance.ok_or_else(|| Status::not_found("no such user"))?;
        Ok(Response::new(GetUserPointsResponse { user_id, balance }))
    }

    async fn deduct_points(
        &self,
        request: Request<DeductPointsRequest>,
    ) -> Result<Response<DeductPointsResponse>, Status> {
        let request = request.into_inner();
        if self.faults.refuse_deducts.load(Ordering::Relaxed) {
            return Err(Status::unavailable("maintenance"));
        }
        self.misbehave_before().await?;
        let on = |flag: &AtomicBool| flag.load(Ordering::Relaxed);
        if on(&self.faults.strict_points) && request.points < 1 {
            return Err(Status::invalid_argument("points must be positive"));
        }
        let key = (request.order_id.clone(), request.user_id.clone());
        let entry = {
            let mut book = self.book();
            let known = book.deductions.get(&key).copied();
            let take_again = match known {
                Some(entry) if entry.state == DeductionState::Refunded && entry.points == 0 => {
                    on(&self.faults.hanging_deducts)
                }
                Some(_) => on(&self.faults.deducts_not_idempotent),
                None => true,
            };
            if book.tombstones.contains(&key) {
                return Err(Status::failed_precondition("refunded before"));
            }
            if let (Some(entry), false) = (known, take_again) {
                entry
            } else {
                let balance = book
                    .balances
                    .get_mut(&request.user_id)
                    .ok_or_else(|| Status::not_found("no such user"))?;
                if *balance < request.points {
                    return Err(Status::failed_precondition("insufficient points"));
                }
                *balance -= request.points;
                let entry = Entry {
                    state: DeductionState::Deducted,
                    points: request.points,
                };
                book.deductions.insert(key, entry);
                self.deducts_applied.fetch_add(1, Ordering::Relaxed);
                entry
            }
        };
        let mut answer = self.deduction(&request.order_id, &request.user_id, entry);
        if self.faults.misreport_points.load(Ordering::Relaxed) {
            answer.points += 1;
        }
        self.misbehave_after(DeductPointsResponse {
            deduction: Some(answer),
        })
    }

    async fn refund_points(
        &self,
        request: Request<RefundPointsRequest>,
    ) -> Result<Response<RefundPointsResponse>, Status> {
        let request = request.into_inner();
        self.misbehave_before().await?;
        let key = (request.order_id.clone(), request.user_id.clone());
        let entry = {
            let mut book = self.book();
            let Some(entry) = book.deductions.get(&key).copied() else {
                if self.faults.null_compensation.load(Ordering::Relaxed) {
                    let null = Entry {
                        state: DeductionState::Refunded,
                        points: 0,
                    };
                    book.deductions.insert(key, null);
                    drop(book);
                    return Ok(Response::new(RefundPointsResponse {
                        deduction: Some(self.deduction(&request.order_id, &request.user_id, null)),
                    }));
                }
                if self.faults.tombstones.load(Ordering::Relaxed) {
                    book.tombstones.insert(key);
                }
                return Err(Status::not_found("no such deduction"));
            };
            let again = entry.state == DeductionState::Refunded
                && entry.points > 0
                && self.faults.refunds_repeat.load(Ordering::Relaxed);
            if again {
                *book.balances.entry(request.user_id.clone()).or_default() += entry.points;
                entry
            } else if entry.state == DeductionState::Deducted {
                *book.balances.entry(request.user_id.clone()).or_default() += entry.points;
                let refunded = Entry {
                    state: DeductionState::Refunded,
                    points: entry.points,
                };
                book.deductions.insert(key, refunded);
                refunded
            } else {
                entry
            }
        };
        self.misbehave_after(RefundPointsResponse {
            deduction: Some(self.deduction(&request.order_id, &request.user_id, entry)),
        })
    }

    async fn get_deduction(
        &self,
        request: Request<GetDeductionRequest>,
    ) -> Result<Response<GetDeductionResponse>, Status> {
        let request = request.into_inner();
        if self.faults.no_query.load(Ordering::Relaxed) {
            return Err(Status::unimplemented("no query by key"));
        }
        self.misbehave_before().await?;
        let key = (request.order_id.clone(), request.user_id.clone());
        let entry = self.book().deductions.get(&key).copied();
        let entry = entry.ok_or_else(|| Status::not_found("no such deduction"))?;
        Ok(Response::new(GetDeductionResponse {
            deduction: Some(self.deduction(&request.order_id, &request.user_id, entry)),
        }))
    }

    async fn credit_points(
        &self,
        _request: Request<CreditPointsRequest>,
    ) -> Result<Response<CreditPointsResponse>, Status> {
        Err(Status::unimplemented(
            "credits are made in the partner's back office",
        ))
    }
}

/// What the fake's book adds up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeakTotals {
    pub credited: i64,
    pub balances: i64,
    pub held: i64,
}

/// The weak channel, served on a free port until dropped.
#[derive(Debug)]
pub struct WeakChannel {
    pub addr: SocketAddr,
    pub faults: std::sync::Arc<Faults>,
    deducts_applied: std::sync::Arc<AtomicU64>,
    fake: std::sync::Arc<Fake>,
    shutdown: CancellationToken,
}

impl WeakChannel {
    /// Serves a channel `channel_id` whose `users` hold `points` each.
    pub async fn start(channel_id: &str, users: &[&str], points: i64) -> Self {
        let faults = std::sync::Arc::new(Faults::default());
        let deducts_applied = std::sync::Arc::new(AtomicU64::new(0));
        let mut book = Book::default();
        for user in users {
            book.balances.insert((*user).to_owned(), points);
            book.credited += points;
        }
        let fake = std::sync::Arc::new(Fake {
            channel_id: channel_id.to_owned(),
            book: Mutex::new(book),
            faults: faults.clone(),
            dice: AtomicU64::new(7),
            deducts_applied: deducts_applied.clone(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("a bound address");
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let service = ChannelServiceServer::from_arc(fake.clone());
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    token.cancelled_owned(),
                )
                .await;
        });
        Self {
            addr,
            faults,
            deducts_applied,
            fake,
            shutdown,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn balance(&self, user_id: &str) -> i64 {
        self.fake.book().balances.get(user_id).copied().unwrap_or(0)
    }

    /// The state of a key, if the fake recorded one.
    pub fn deduction(&self, order_id: &str, user_id: &str) -> Option<(DeductionState, i64)> {
        self.fake
            .book()
            .deductions
            .get(&(order_id.to_owned(), user_id.to_owned()))
            .map(|e| (e.state, e.points))
    }

    /// How many deducts took points.
    pub fn deducts_applied(&self) -> u64 {
        self.deducts_applied.load(Ordering::Relaxed)
    }

    pub fn totals(&self) -> WeakTotals {
        let book = self.fake.book();
        WeakTotals {
            credited: book.credited,
            balances: book.balances.values().sum(),
            held: book
                .deductions
                .values()
                .filter(|e| e.state == DeductionState::Deducted)
                .map(|e| e.points)
                .sum(),
        }
    }
}

impl Drop for WeakChannel {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
