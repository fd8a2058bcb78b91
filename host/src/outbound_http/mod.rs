//! Outbound HTTP from guests (`wasi:http/client`), gated by `allowed_outbound_hosts`.
//!
//! A refused destination is answered with the `HTTP-request-denied` error code before any
//! connection is attempted, exactly as Spin does; the guest sees an error value, never a trap.

use std::sync::Arc;

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::state::ComponentContext;

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send>;

/// The wasi-http hooks of one component.
#[derive(Debug)]
pub struct OutboundHttp {
    component: Arc<ComponentContext>,
}

impl OutboundHttp {
    pub fn new(component: Arc<ComponentContext>) -> Self {
        Self { component }
    }

    fn allows(&self, uri: &http::Uri) -> bool {
        let allowed = &self.component.allowed_hosts;
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
                component = %self.component.id,
                uri = %request.uri(),
                "outbound HTTP refused: not in allowed_outbound_hosts"
            );
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as IoFuture,
            ))
        })
    }
}
