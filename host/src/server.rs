//! The HTTP front: accepts connections, routes like Spin's HTTP trigger, enforces the body
//! limit and the concurrency bound, and hands requests to component instances.
//!
//! Requests the host answers itself (no route, body too large, overload, timeout, a failed
//! component) get a JSON body `{ "error": code, "message": … }`, the same shape the
//! components use, and never any internal detail: the cause goes to the log.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, RETRY_AFTER};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::handler::{
    ExpirationError, InstantiationError, ProxyHandler, TrapOrPanicError,
};

use edge_app::routes::{RouteMatch, WellKnown, full_url, well_known};
use ticketing_core::{ApiError, ErrorCode};

use crate::admission::{self, Admission, AdmissionSettings, Priority};
use crate::instance::ComponentInstances;
use crate::loader::LoadedApp;

#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// Requests handled at once, and how many may wait how long for a turn past that.
    pub admission: AdmissionSettings,
    /// Components whose requests wait for a turn behind every other's (a waiting room's
    /// polls, so the sale it protects never waits behind its own queue).
    pub low_priority_components: Vec<String>,
    /// Largest request body accepted, in bytes.
    pub max_request_body: usize,
    /// How long a graceful shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            admission: AdmissionSettings::default(),
            low_priority_components: Vec::new(),
            max_request_body: 1 << 20,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

struct Server {
    app: Arc<LoadedApp>,
    settings: ServerSettings,
    admission: Arc<Admission>,
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and waits up
/// to the drain timeout for in-flight requests.
pub async fn serve(
    listener: TcpListener,
    app: Arc<LoadedApp>,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // A misspelt name would leave the queue in the sale's line without a word.
    if let Some(unknown) = settings
        .low_priority_components
        .iter()
        .find(|name| !app.components.contains_key(name.as_str()))
    {
        anyhow::bail!("--low-priority-component {unknown}: no such component in the app");
    }
    let admission = Arc::new(Admission::new(
        settings.admission,
        app.shared.reuse.request_timeout,
    ));
    let limit_follows_cpu = tokio::spawn(admission::follow_cpu_wait(
        admission.clone(),
        app.shared.metrics.clone(),
    ));
    let server = Arc::new(Server {
        app,
        settings,
        admission,
    });
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small responses must not wait for Nagle's algorithm.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "setting TCP_NODELAY");
        }
        let server = server.clone();
        let service = hyper::service::service_fn(move |request| {
            let server = server.clone();
            async move { Ok::<_, Infallible>(server.handle(peer, request).await) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(server.settings.drain_timeout) => {
            tracing::warn!("drain timeout reached; closing remaining connections");
        }
    }
    limit_follows_cpu.abort();
    Ok(())
}

impl Server {
    /// One request: answered by the host itself, or routed, read, shaped as Spin hands it to
    /// a guest, and run on an instance of its component.
    async fn handle(&self, peer: SocketAddr, request: Request<Incoming>) -> Response<WasiBody> {
        let started = Instant::now();
        let path = request.uri().path().to_owned();
        if let Some(answer) = self.well_known_answer(&path) {
            return answer;
        }
        let Some(route) = self.app.router.route(&path) else {
            self.app.shared.metrics.rejected("no_route");
            return error_response(ErrorCode::NotFound, &format!("no route matches {path}"));
        };
        let component = route.component;
        let Some(instances) = self.app.components.get(component.as_str()) else {
            tracing::error!(%component, "routed to a component that was not loaded");
            return internal_error();
        };
        let (mut parts, body) = request.into_parts();
        let body = match self.read_body(&parts.headers, body).await {
            Ok(body) => body,
            Err(refusal) => return refusal,
        };
        if let Err(refusal) = as_spin_hands_it_over(&mut parts, &route, peer) {
            return *refusal;
        }
        let priority = if self
            .settings
            .low_priority_components
            .iter()
            .any(|low| low == component.as_str())
        {
            Priority::Low
        } else {
            Priority::Normal
        };
        let _turn = match self
            .admission
            .admit(priority, &self.app.shared.metrics)
            .await
        {
            Ok(turn) => turn,
            Err(shed) => return at_capacity(shed.retry_after_secs),
        };
        let in_flight = self.app.route_metrics[route.trigger_index()].started();
        let response = match self.run(instances, parts, body, started).await {
            Ok(response) => response,
            Err(error) => self.guest_failure(component.as_str(), &error, started),
        };
        in_flight.finished(response.status().as_u16(), started.elapsed());
        response
    }

    /// Runs the request on an instance. When every instance slot is taken the guest never
    /// started, so the request waits for a slot (checking every few milliseconds, since
    /// wasmtime does not say when one frees) until its turn's deadline, instead of failing
    /// at once.
    async fn run(
        &self,
        instances: &ProxyHandler<ComponentInstances>,
        parts: http::request::Parts,
        body: Bytes,
        started: Instant,
    ) -> wasmtime::Result<Response<WasiBody>> {
        let deadline = started + self.admission.max_wait();
        let mut pause = Duration::from_millis(2);
        loop {
            let request = Request::from_parts(parts.clone(), full_body(body.clone()));
            match instances.handle((), request).await {
                Err(error)
                    if instance_slots_exhausted(&error) && Instant::now() + pause < deadline =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                answered => return answered,
            }
        }
    }

    /// The host's own answer for `/.well-known/spin/…` paths, which never reach a guest.
    fn well_known_answer(&self, path: &str) -> Option<Response<WasiBody>> {
        Some(match well_known(path)? {
            WellKnown::Health => text_response(StatusCode::OK, "OK"),
            WellKnown::Info => self.info(),
            WellKnown::NotFound => error_response(ErrorCode::NotFound, "no such endpoint"),
        })
    }

    /// The whole body, or the refusal of one over `--max-request-body` (declared or
    /// streamed) or one that cannot be read.
    async fn read_body(
        &self,
        headers: &http::HeaderMap,
        body: Incoming,
    ) -> Result<Bytes, Response<WasiBody>> {
        let metrics = &self.app.shared.metrics;
        let declared_length = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared_length.is_some_and(|n| n > self.settings.max_request_body as u64) {
            metrics.rejected("body_too_large");
            return Err(self.too_large());
        }
        match Limited::new(body, self.settings.max_request_body)
            .collect()
            .await
        {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
                metrics.rejected("body_too_large");
                Err(self.too_large())
            }
            Err(error) => {
                tracing::debug!(%error, "reading a request body");
                Err(error_response(
                    ErrorCode::BadRequest,
                    "the request body could not be read",
                ))
            }
        }
    }

    /// The answer for a request whose guest failed: a timeout, no free instance slot, or a
    /// trap.
    fn guest_failure(
        &self,
        component: &str,
        error: &wasmtime::Error,
        started: Instant,
    ) -> Response<WasiBody> {
        // A guest that computes without yielding can stall its instance's event loop; then
        // the instance itself is stopped for time, which surfaces as a trap.
        if error.is::<ExpirationError>()
            || (error.is::<TrapOrPanicError>()
                && started.elapsed() >= self.app.shared.reuse.request_timeout)
        {
            tracing::warn!(%component, "request timed out");
            return error_response(ErrorCode::Timeout, "the request took too long");
        }
        // Every instance slot is taken: the server is at capacity, like the request limit,
        // and the client may retry.
        if instance_slots_exhausted(error) {
            self.app.shared.metrics.rejected("instances");
            tracing::warn!(%component, "no free instance slot in time");
            return at_capacity(1);
        }
        tracing::error!(%component, error = format!("{error:#}"), "component failed");
        internal_error()
    }

    /// `/.well-known/spin/info`: what is being served.
    fn info(&self) -> Response<WasiBody> {
        let body = serde_json::json!({
            "name": self.app.name,
            "host": "edge",
            "version": env!("CARGO_PKG_VERSION"),
        });
        json_response(StatusCode::OK, body.to_string())
    }

    fn too_large(&self) -> Response<WasiBody> {
        error_response(
            ErrorCode::PayloadTooLarge,
            &format!(
                "the request body exceeds {} bytes",
                self.settings.max_request_body
            ),
        )
    }
}

/// The request as Spin hands it to a guest: an absolute URL built from the Host header;
/// the client's own headers kept, `spin-*` ones included, and Spin's appended after them,
/// so a guest must read the last value of a `spin-*` header (a client can add earlier
/// ones, never later ones); `Connection`, transport information, removed.
fn as_spin_hands_it_over(
    parts: &mut http::request::Parts,
    route: &RouteMatch<'_>,
    peer: SocketAddr,
) -> Result<(), Box<Response<WasiBody>>> {
    let host = parts.headers.get(HOST).and_then(|v| v.to_str().ok());
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let full_url = full_url("http", host, path_and_query);
    parts.uri = full_url.parse().map_err(|_| {
        Box::new(error_response(
            ErrorCode::BadRequest,
            "the Host header is not a valid authority",
        ))
    })?;
    parts.headers.remove(CONNECTION);
    for (name, value) in route.spin_headers(&full_url, peer) {
        if let (Some(name), Ok(value)) = (header_name(name), HeaderValue::from_str(&value)) {
            parts.headers.append(name, value);
        }
    }
    Ok(())
}

/// The fixed `spin-*` names as preparsed constants; only `spin-path-match-*` is parsed.
fn header_name(name: &str) -> Option<HeaderName> {
    use edge_app::routes::header;
    static FIXED: [(&str, HeaderName); 7] = [
        (
            header::PATH_INFO,
            HeaderName::from_static(header::PATH_INFO),
        ),
        (header::FULL_URL, HeaderName::from_static(header::FULL_URL)),
        (
            header::MATCHED_ROUTE,
            HeaderName::from_static(header::MATCHED_ROUTE),
        ),
        (
            header::BASE_PATH,
            HeaderName::from_static(header::BASE_PATH),
        ),
        (
            header::RAW_COMPONENT_ROUTE,
            HeaderName::from_static(header::RAW_COMPONENT_ROUTE),
        ),
        (
            header::COMPONENT_ROUTE,
            HeaderName::from_static(header::COMPONENT_ROUTE),
        ),
        (
            header::CLIENT_ADDR,
            HeaderName::from_static(header::CLIENT_ADDR),
        ),
    ];
    FIXED
        .iter()
        .find(|(fixed, _)| *fixed == name)
        .map(|(_, parsed)| parsed.clone())
        .or_else(|| HeaderName::from_bytes(name.as_bytes()).ok())
}

fn full_body(bytes: Bytes) -> WasiBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn text_response(status: StatusCode, text: &'static str) -> Response<WasiBody> {
    let mut response = Response::new(full_body(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}

/// A JSON error in the API's shape and taxonomy (the core's [`ErrorCode`], with its one
/// status). `message` is ours, never a guest's or a library's text.
fn error_response(code: ErrorCode, message: &str) -> Response<WasiBody> {
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, ApiError::new(code, message).to_json())
}

fn json_response(status: StatusCode, body: String) -> Response<WasiBody> {
    let mut response = Response::new(full_body(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Whether the pooling allocator had no free slot for a new instance (wasmtime-wasi-http
/// wraps the cause in the instantiation error it hands to every waiting request).
fn instance_slots_exhausted(error: &wasmtime::Error) -> bool {
    error
        .downcast_ref::<InstantiationError<()>>()
        .is_some_and(|failed| failed.error.is::<wasmtime::PoolConcurrencyLimitError>())
}

/// `503` with `Retry-After`: no turn or no instance slot came in time.
fn at_capacity(retry_after_secs: u64) -> Response<WasiBody> {
    let mut response = error_response(
        ErrorCode::ServiceUnavailable,
        "the server is at capacity, retry after the time Retry-After gives",
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

fn internal_error() -> Response<WasiBody> {
    error_response(ErrorCode::Internal, "the request failed inside the server")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_sent_with_its_codes_status_and_a_json_body() {
        let response = error_response(ErrorCode::PayloadTooLarge, "a \"quoted\"\nmessage");
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let body = futures::executor::block_on(response.into_body().collect())
            .unwrap()
            .to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({ "error": "payload_too_large", "message": "a \"quoted\"\nmessage" })
        );
    }
}
