//! The gRPC server bootstrap every Jifen service uses.
//!
//! [`GrpcServer::bind`] takes the listener first (port 0 in tests) so the caller learns the
//! real address before serving; [`GrpcServer::serve`] adds `grpc.health.v1.Health` and server
//! reflection (`v1` and `v1alpha`) to the service's routes and runs until the shutdown token
//! is cancelled. Shutdown order: health reports NOT_SERVING, a grace period lets watchers move
//! away, then the listener closes and in-flight calls finish.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

/// Streams a client may reset before the server took them, at once, before the connection is
/// closed with `ENHANCE_YOUR_CALM`. h2's default, 20, is meant for a rapid-reset attack; a web
/// backend that opens and drops `WatchOrder`s by the thousand on one connection is not one.
/// Still bounded: each such stream costs the server a little until it is taken.
pub const MAX_PENDING_ACCEPT_RESETS: usize = 1_000;

/// Streams the server itself may reset for a client's errors before it closes the connection:
/// hyper's default, which tonic would otherwise lift (unbounded).
pub const MAX_LOCAL_ERROR_RESETS: usize = 1_024;

#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the reflection service")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server failed")]
    Serve(#[from] tonic::transport::Error),
}

/// A bound, not yet serving, gRPC listener.
pub struct GrpcServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<crate::tls::ServerTls>,
    /// A plain-text listener serving health only, for probes that speak no TLS.
    plain_health: Option<TcpListener>,
    /// Parts reported under names of their own, SERVING while their watch says true.
    watched: Vec<(&'static str, tokio::sync::watch::Receiver<bool>)>,
}

impl GrpcServer {
    pub async fn bind(addr: SocketAddr) -> Result<Self, GrpcError> {
        let bind_error = |source| GrpcError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(Self {
            listener,
            local_addr,
            tls: None,
            plain_health: None,
            watched: Vec::new(),
        })
    }

    /// Reports `name` in the health service as `up` says (SERVING while true): a part whose
    /// failure monitors should see without taking the whole server out of service.
    pub fn with_watched_status(
        mut self,
        name: &'static str,
        up: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        self.watched.push((name, up));
        self
    }

    /// Also serves the health service alone, in plain text, at `addr` (when given).
    pub async fn with_plain_health(mut self, addr: Option<SocketAddr>) -> Result<Self, GrpcError> {
        if let Some(addr) = addr {
            let bind_error = |source| GrpcError::Bind { addr, source };
            self.plain_health = Some(TcpListener::bind(addr).await.map_err(bind_error)?);
        }
        Ok(self)
    }

    /// Serves TLS only (mutual TLS when the configuration asks clients for certificates).
    pub fn with_tls(mut self, tls: Option<crate::tls::ServerTls>) -> Self {
        self.tls = tls;
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves `routes` plus health and reflection until `shutdown` is cancelled.
    /// `services` are the fully-qualified names reported SERVING by the health service
    /// (besides the empty name, which stands for the whole server).
    pub async fn serve(
        self,
        mut routes: RoutesBuilder,
        services: &[&'static str],
        shutdown: CancellationToken,
        grace: Duration,
    ) -> Result<(), GrpcError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        for name in services {
            health
                .set_service_status(*name, ServingStatus::Serving)
                .await;
        }
        for (name, mut up) in self.watched {
            let health = health.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    let status = if *up.borrow_and_update() {
                        ServingStatus::Serving
                    } else {
                        ServingStatus::NotServing
                    };
                    health.set_service_status(name, status).await;
                    tokio::select! {
                        () = stop.cancelled() => return,
                        changed = up.changed() => if changed.is_err() { return },
                    }
                }
            });
        }
        // The probes' listener stops once the server has: it reports NOT_SERVING meanwhile.
        let probes_stop = CancellationToken::new();
        let probes = self.plain_health.map(|listener| {
            let health_service = health_service.clone();
            let stop = probes_stop.clone();
            tokio::spawn(async move {
                let served = Server::builder()
                    .add_service(health_service)
                    .serve_with_incoming_shutdown(incoming(listener), stop.cancelled_owned())
                    .await;
                if let Err(error) = served {
                    tracing::error!(%error, "the plain-text health listener failed");
                }
            })
        });
        routes
            .add_service(health_service)
            .add_service(reflection(services).build_v1()?)
            .add_service(reflection(services).build_v1alpha()?);

        let names: Vec<&'static str> = services.to_vec();
        let addr = self.local_addr;
        let stopping = async move {
            shutdown.cancelled().await;
            tracing::info!(%addr, "gRPC server stopping: health reports NOT_SERVING");
            health
                .set_service_status("", ServingStatus::NotServing)
                .await;
            for name in names {
                health
                    .set_service_status(name, ServingStatus::NotServing)
                    .await;
            }
            tokio::time::sleep(grace).await;
        };
        tracing::info!(%addr, services = ?services, tls = self.tls.is_some(), "gRPC server listening");
        let router = Server::builder()
            .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_ACCEPT_RESETS))
            .http2_max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
            .layer(crate::metrics::GrpcMetricsLayer)
            .add_routes(routes.routes());
        let served = match self.tls {
            Some(tls) => {
                router
                    .serve_with_incoming_shutdown(
                        crate::tls_io::incoming(self.listener, tls),
                        stopping,
                    )
                    .await
            }
            None => {
                router
                    .serve_with_incoming_shutdown(incoming(self.listener), stopping)
                    .await
            }
        };
        probes_stop.cancel();
        if let Some(probes) = probes {
            let _ = probes.await;
        }
        served?;
        tracing::info!(%addr, "gRPC server stopped");
        Ok(())
    }
}

/// Reflection that knows every Jifen message, so clients need no proto files, and lists only
/// the services this server really carries.
fn reflection(services: &[&'static str]) -> tonic_reflection::server::Builder<'static> {
    let builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(jifen_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .with_service_name("grpc.health.v1.Health")
        .with_service_name("grpc.reflection.v1.ServerReflection");
    services
        .iter()
        .fold(builder, |builder, name| builder.with_service_name(*name))
}

/// The accepted connections, with Nagle's algorithm off. A listener handed to tonic does not
/// get its `tcp_nodelay` setting: with Nagle on, a response's second small write waits for
/// the peer's delayed ACK — 40 ms on Linux — which showed as 40 ms steps in every order's
/// latency.
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}
