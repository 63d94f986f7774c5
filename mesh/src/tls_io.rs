//! gRPC over TLS, both ends (DESIGN §11): the server's accepted connections after their
//! handshake ([`incoming`]), and a client channel to an `http://` or `https://` endpoint
//! ([`GrpcTarget`]). Each handshake takes the configuration as it is at that moment, so a
//! rotated certificate serves every connection opened after it changed.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::tls::{ClientTls, ServerTls, TlsError};

/// How long a client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An accepted connection after its TLS handshake.
pub struct TlsConn {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    info: TcpConnectInfo,
}

impl Connected for TlsConn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The connections of `listener` that completed a TLS handshake. Handshakes run on their own
/// tasks, so a slow or silent client never holds up the next; the accepting task ends when
/// the server drops the stream.
pub fn incoming(
    listener: TcpListener,
    tls: ServerTls,
) -> ReceiverStream<Result<TlsConn, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = tx.closed() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, remote) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Without it a response's second small write waits for the peer's delayed ACK.
            let _ = stream.set_nodelay(true);
            let info = TcpConnectInfo {
                local_addr: stream.local_addr().ok(),
                remote_addr: Some(remote),
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.get());
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(TlsConn { stream, info })).await;
                    }
                    Ok(Err(error)) => {
                        tracing::debug!(%remote, %error, "TLS handshake refused");
                    }
                    Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// A gRPC server to call: `http://host:port` in plain text, `https://host:port` over TLS
/// checked against the client's CA (and presenting its certificate, for mutual TLS).
#[derive(Debug, Clone)]
pub struct GrpcTarget {
    endpoint: Endpoint,
    tls: Option<TlsConnector>,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{endpoint:?} is not an endpoint: {reason}")]
    Invalid { endpoint: String, reason: String },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl GrpcTarget {
    pub fn new(url: &str, tls: Option<&ClientTls>) -> Result<Self, TargetError> {
        let invalid = |reason: &dyn std::fmt::Display| TargetError::Invalid {
            endpoint: url.to_owned(),
            reason: reason.to_string(),
        };
        let uri: Uri = url.parse().map_err(|e| invalid(&e))?;
        if uri.scheme_str() != Some("https") {
            let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|e| invalid(&e))?;
            return Ok(Self {
                endpoint,
                tls: None,
            });
        }
        let tls = tls.ok_or_else(|| TlsError::NoCa {
            endpoint: url.to_owned(),
        })?;
        let host = uri.host().ok_or_else(|| invalid(&"no host"))?;
        let port = uri.port_u16().unwrap_or(443);
        let name = rustls::pki_types::ServerName::try_from(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        )
        .map_err(|e| invalid(&e))?;
        // tonic makes the connection through the connector below, which does the TLS; it is
        // given the plain scheme so that it does not look for TLS of its own.
        let endpoint =
            Endpoint::from_shared(format!("http://{host}:{port}")).map_err(|e| invalid(&e))?;
        Ok(Self {
            endpoint,
            tls: Some(TlsConnector {
                tls: tls.clone(),
                name,
            }),
        })
    }

    /// The deadline of each connection attempt and of each call.
    pub fn timeouts(mut self, connect: Duration, call: Duration) -> Self {
        self.endpoint = self.endpoint.connect_timeout(connect).timeout(call);
        self
    }

    /// A channel that connects on first use (and again after a failure).
    pub fn lazy(self) -> Channel {
        match self.tls {
            Some(connector) => self.endpoint.connect_with_connector_lazy(connector),
            None => self.endpoint.connect_lazy(),
        }
    }

    /// A channel connected now.
    pub async fn connect(self) -> Result<Channel, tonic::transport::Error> {
        match self.tls {
            Some(connector) => self.endpoint.connect_with_connector(connector).await,
            None => self.endpoint.connect().await,
        }
    }
}

/// Connects over TCP, then TLS with the client configuration of the moment.
#[derive(Clone)]
struct TlsConnector {
    tls: ClientTls,
    name: rustls::pki_types::ServerName<'static>,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("name", &self.name)
            .finish()
    }
}

impl tower::Service<Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.tls.get());
        let name = self.name.clone();
        Box::pin(connect(uri, connector, name))
    }
}

async fn connect(
    uri: Uri,
    connector: tokio_rustls::TlsConnector,
    name: rustls::pki_types::ServerName<'static>,
) -> std::io::Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>> {
    let host = uri.host().unwrap_or_default();
    let port = uri.port_u16().unwrap_or(443);
    let stream =
        TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port)).await?;
    stream.set_nodelay(true)?;
    Ok(TokioIo::new(connector.connect(name, stream).await?))
}
