//! The admin listener of a long-running service: `/metrics`, `/health` and the like, kept
//! off the public port. The service decides what each path answers; this crate accepts
//! connections and serves them until shutdown (mini-redis style, so tests bind port 0).

use std::convert::Infallible;
use std::pin::pin;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A complete, in-memory answer: admin bodies are small and made at once.
pub type Reply = http::Response<Full<Bytes>>;

/// Serves `listener` until `shutdown` resolves, answering each request with
/// `respond(path)`. Connections already open finish on their own.
pub async fn serve<F>(
    listener: TcpListener,
    respond: F,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()>
where
    F: Fn(&str) -> Reply + Clone + Send + Sync + 'static,
{
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => return Ok(()),
        };
        let respond = respond.clone();
        let service = hyper::service::service_fn(move |request: http::Request<_>| {
            let reply = respond(request.uri().path());
            async move { Ok::<_, Infallible>(reply) }
        });
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "admin connection");
            }
        });
    }
}
