//! The pooled HTTP client behind every guest's outbound request, as Spin pools them.
//!
//! wasmtime's `default_send_request` opens a TCP (and TLS) connection per request and closes
//! it after the response. At hundreds of gateway calls a second that is a handshake per
//! payment and a socket in TIME_WAIT per call, enough to run out of ephemeral ports towards
//! one destination. One client per application keeps idle keep-alive connections per
//! destination instead; a connection the server closed while idle is retried on a new one.
//!
//! The request's `connect-timeout` bounds a new connection (a pooled one needs none),
//! `first-byte-timeout` the wait for the response head and `between-bytes-timeout` each wait
//! for more of the body, as wasi:http defines them.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body::{Body, Frame};
use http_body_util::BodyExt as _;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// wasi:http's timeout when a request sets none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// How long an idle connection stays in the pool.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One application's outbound HTTP connections, shared by all its components.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<Connector, WasiBody>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpClient")
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .build(Connector {
                tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            });
        Self { client }
    }
}

tokio::task_local! {
    /// The connect timeout of the request being sent: the client's connector has no other
    /// way to learn it.
    static CONNECT_TIMEOUT: Duration;
}

impl HttpClient {
    /// Sends `request` on a pooled connection; its URI must be an absolute `http` or `https`
    /// one (a relative URI has nowhere to go, as with wasmtime's own client).
    pub async fn send(
        &self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<http::Response<WasiBody>, Error> {
        let uri = request.uri();
        let scheme_known = matches!(uri.scheme_str(), Some("http" | "https"));
        if !scheme_known || uri.host().is_none_or(str::is_empty) {
            return Err(Error::HttpRequestUriInvalid);
        }
        let timeout = |pick: fn(&RequestOptions) -> Option<Duration>| {
            options.as_ref().and_then(pick).unwrap_or(DEFAULT_TIMEOUT)
        };
        let connect = timeout(|o| o.connect_timeout);
        let between_bytes = timeout(|o| o.between_bytes_timeout);
        let head = CONNECT_TIMEOUT.scope(connect, self.client.request(request));
        let response = tokio::time::timeout(timeout(|o| o.first_byte_timeout), head)
            .await
            .map_err(|_| Error::ConnectionReadTimeout)?
            .map_err(|error| request_error(&error))?;
        Ok(response.map(|incoming| {
            BetweenBytes {
                incoming,
                limit: between_bytes,
                timer: None,
            }
            .boxed_unsync()
        }))
    }
}

/// Why no connection could be made; carried through the client to become the guest's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum ConnectFailure {
    #[error("the destination's name does not resolve")]
    UnknownHost,
    #[error("connecting timed out")]
    Timeout,
    #[error("the destination refused the connection")]
    Refused,
    #[error("the TLS handshake failed")]
    Tls,
    #[error("the URI has no host")]
    NoHost,
}

impl From<ConnectFailure> for Error {
    fn from(failure: ConnectFailure) -> Self {
        match failure {
            ConnectFailure::UnknownHost => Error::DestinationNotFound,
            ConnectFailure::Timeout => Error::ConnectionTimeout,
            ConnectFailure::Refused => Error::ConnectionRefused,
            ConnectFailure::Tls => Error::TlsProtocolError,
            ConnectFailure::NoHost => Error::HttpRequestUriInvalid,
        }
    }
}

/// The guest's error code for a failed request: the connector's own reason, or what hyper
/// saw on the connection.
fn request_error(error: &(dyn std::error::Error + 'static)) -> Error {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(failure) = error.downcast_ref::<ConnectFailure>() {
            return (*failure).into();
        }
        if let Some(error) = error.downcast_ref::<hyper::Error>() {
            return hyper_error(error);
        }
        cause = error.source();
    }
    tracing::warn!(error = %error, "outbound HTTP request failed");
    Error::HttpProtocolError
}

fn hyper_error(error: &hyper::Error) -> Error {
    if error.is_timeout() {
        Error::HttpResponseTimeout
    } else if error.is_incomplete_message() {
        Error::HttpResponseIncomplete
    } else if error.is_canceled() || error.is_closed() {
        Error::ConnectionTerminated
    } else {
        tracing::warn!(error = %error, "outbound HTTP protocol error");
        Error::HttpProtocolError
    }
}

/// Opens TCP connections, with TLS for `https`, with `TCP_NODELAY` as requests are small.
#[derive(Clone)]
struct Connector {
    tls: tokio_rustls::TlsConnector,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = ConnectFailure;
    type Future =
        Pin<Box<dyn Future<Output = Result<TokioIo<Stream>, ConnectFailure>> + Send + 'static>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectFailure>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        // Read here, inside the request's scope: the connection may finish in the background.
        let limit = CONNECT_TIMEOUT.try_with(|t| *t).unwrap_or(DEFAULT_TIMEOUT);
        let tls = self.tls.clone();
        Box::pin(async move {
            tokio::time::timeout(limit, connect(&uri, &tls))
                .await
                .map_err(|_| ConnectFailure::Timeout)?
                .map(TokioIo::new)
        })
    }
}

async fn connect(uri: &Uri, tls: &tokio_rustls::TlsConnector) -> Result<Stream, ConnectFailure> {
    let host = uri.host().ok_or(ConnectFailure::NoHost)?;
    let secure = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    // An IPv6 literal keeps its brackets in the URI; the resolver wants it bare.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<_> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|_| ConnectFailure::UnknownHost)?
        .collect();
    let tcp = TcpStream::connect(&*addresses)
        .await
        .map_err(|_| ConnectFailure::Refused)?;
    // Requests and answers are a packet or two: sending at once beats Nagle's batching.
    let _ = tcp.set_nodelay(true);
    if !secure {
        return Ok(Stream::Plain(tcp));
    }
    let name = rustls::pki_types::ServerName::try_from(bare)
        .map_err(|_| ConnectFailure::Tls)?
        .to_owned();
    let stream = tls
        .connect(name, tcp)
        .await
        .map_err(|_| ConnectFailure::Tls)?;
    Ok(Stream::Tls(Box::new(stream)))
}

/// A connection, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Stream::Plain(tcp) => tcp.connected(),
            Stream::Tls(tls) => tls.get_ref().0.connected(),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(tcp) => tcp.is_write_vectored(),
            Stream::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A response body that fails when the next frame takes longer than `limit`.
struct BetweenBytes {
    incoming: hyper::body::Incoming,
    limit: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Body for BetweenBytes {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.timer = None;
                Poll::Ready(frame.map(|frame| frame.map_err(|error| hyper_error(&error))))
            }
            Poll::Pending => {
                let limit = this.limit;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Empty;

    fn get(uri: &str) -> http::Request<WasiBody> {
        let body = Empty::new().map_err(|never| match never {}).boxed_unsync();
        http::Request::get(uri).body(body).expect("a request")
    }

    #[tokio::test]
    async fn a_uri_without_a_host_or_with_another_scheme_is_invalid_before_any_connection() {
        let client = HttpClient::default();
        for uri in ["/relative", "ftp://127.0.0.1:21/file"] {
            let error = client.send(get(uri), None).await.expect_err(uri);
            assert!(
                matches!(error, Error::HttpRequestUriInvalid),
                "{uri}: {error}"
            );
        }
    }
}
