//! Outbound HTTP from guests (`wasi:http/client`), gated by `allowed_outbound_hosts`.
//!
//! A refused destination is answered with the `HTTP-request-denied` error code before any
//! connection is attempted, exactly as Spin does; the guest sees an error value, never a trap.
//! Allowed requests go out on the application's pooled [`HttpClient`].

mod client;

use std::sync::Arc;

use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use edge_app::outbound::AllowedHosts;

pub use self::client::HttpClient;

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send>;

/// The wasi-http hooks of one component, made once and cloned into each of its instances.
#[derive(Debug, Clone)]
pub struct OutboundHttp {
    /// The component's id, for the log line of a refusal.
    component: Arc<str>,
    allowed_hosts: Arc<AllowedHosts>,
    client: HttpClient,
}

impl OutboundHttp {
    pub fn new(component: &str, allowed_hosts: Arc<AllowedHosts>, client: HttpClient) -> Self {
        Self {
            component: component.into(),
            allowed_hosts,
            client,
        }
    }

    fn allows(&self, uri: &http::Uri) -> bool {
        let allowed = &self.allowed_hosts;
        match uri.host() {
            None | Some("self.alt") => allowed.allows_relative(),
            Some(_) => allowed.allows(&uri.to_string(), "https"),
        }
    }
}

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> SendFuture {
        drop(fut);
        if !self.allows(request.uri()) {
            tracing::info!(
                component = %self.component,
                uri = %request.uri(),
                "outbound HTTP refused: not in allowed_outbound_hosts"
            );
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        let client = self.client.clone();
        Box::new(async move {
            let response = client.send(request, options).await?;
            // The pool drives the connection; its failures reach the guest through the body.
            Ok((response, Box::new(async { Ok(()) }) as IoFuture))
        })
    }
}
