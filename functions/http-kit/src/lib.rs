//! The HTTP edge every component shares, so that all of them speak the same wire format:
//! JSON bodies, `{ "error", "message", "details"? }` errors with the taxonomy's one status
//! per code, `Retry-After` on retryable errors, and strict parsing of bodies, ids and tokens
//! into 4xx errors that name the problem.

use serde::Serialize;
use serde::de::DeserializeOwned;
use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use ticketing_core::time::Timestamp;
use ticketing_core::{ApiError, ErrorCode};

/// What a handler returns: status, headers, JSON text.
pub type Reply = (StatusCode, HeaderMap, String);

/// Largest JSON body a component reads; every request of the API is far smaller.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// JSON headers with the body's length: a known length lets the server send head and body
/// in one write instead of chunked frames.
fn json_headers_for(body: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    headers.insert("content-length", HeaderValue::from(body.len()));
    headers
}

/// `status` with `body` as JSON.
pub fn json(status: StatusCode, body: &impl Serialize) -> Reply {
    match serde_json::to_string(body) {
        Ok(text) => (status, json_headers_for(&text), text),
        // Our reply types always serialize; one that does not is a bug.
        Err(error) => error_reply(&ApiError::internal(format!("encoding a reply: {error}"))),
    }
}

/// `status` with a body that is JSON text already (e.g. from a cache).
pub fn json_text(status: StatusCode, body: String) -> Reply {
    (status, json_headers_for(&body), body)
}

/// The error's JSON body with its status, and `Retry-After` where retrying helps.
pub fn error_reply(error: &ApiError) -> Reply {
    if let Some(cause) = &error.cause {
        eprintln!("internal error: {cause}");
    }
    let status =
        StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let body = error.to_json();
    let mut headers = json_headers_for(&body);
    if error.code.is_retryable() {
        let seconds = error
            .details
            .as_ref()
            .and_then(|details| details.get("retryAfterSeconds")?.as_u64())
            .unwrap_or(1);
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            headers.insert("retry-after", value);
        }
    }
    if error.code == ErrorCode::MethodNotAllowed {
        let allowed = error
            .details
            .as_ref()
            .and_then(|details| details.get("allowed")?.as_array().cloned())
            .unwrap_or_default();
        let names: Vec<&str> = allowed.iter().filter_map(|name| name.as_str()).collect();
        if let Ok(value) = HeaderValue::from_str(&names.join(", ")) {
            headers.insert("allow", value);
        }
    }
    (status, headers, body)
}

/// Turns a handler's result into a reply.
pub fn respond(result: Result<Reply, ApiError>) -> Reply {
    result.unwrap_or_else(|error| error_reply(&error))
}

/// Declares the component's entry point: Spin hands every request to `route`, whose error
/// becomes the JSON error body.
#[macro_export]
macro_rules! serve {
    ($route:path) => {
        #[::spin_sdk::http_service]
        async fn handle(request: ::spin_sdk::http::Request) -> impl ::spin_sdk::http::IntoResponse {
            $crate::respond($route(request).await)
        }
    };
}

/// A path's segments for matching routes: `/api/concerts/7/` is `["api", "concerts", "7"]`.
pub fn path_segments(path: &str) -> Vec<&str> {
    path.trim_end_matches('/').split('/').skip(1).collect()
}

/// A request no route of the component answers.
/// `405` for a path that exists under `allowed` methods only; `error_reply` turns the list
/// into the `Allow` header.
pub fn wrong_method(request: &Request, allowed: &[Method]) -> ApiError {
    let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!(
            "{} {} is not an endpoint; {} it is",
            request.method(),
            request.uri().path(),
            names.join(", ")
        ),
    )
    .with_details(serde_json::json!({ "allowed": names }))
}

/// For a path with one method: `405` unless the request has it.
pub fn only(request: &Request, method: Method) -> Result<(), ApiError> {
    if *request.method() == method {
        Ok(())
    } else {
        Err(wrong_method(request, &[method]))
    }
}

pub fn no_route(request: &Request) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no endpoint {} {}", request.method(), request.uri().path()),
    )
}

/// Reads and parses a JSON body. Syntax errors, wrong types, unknown or missing fields and
/// invalid values become `400`/`400 invalid_field` errors whose message names the field.
pub async fn read_json<T: DeserializeOwned>(request: Request) -> Result<T, ApiError> {
    let declared = request
        .headers()
        .get("content-length")
        .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES) {
        return Err(body_too_large());
    }
    let bytes = request
        .into_body()
        .bytes()
        .await
        .map_err(|_| ApiError::bad_request("the request body could not be read"))?;
    if bytes.len() > MAX_BODY_BYTES {
        return Err(body_too_large());
    }
    if bytes.is_empty() {
        return Err(ApiError::bad_request("a JSON request body is required"));
    }
    serde_json::from_slice(&bytes).or_else(|error| {
        // JSON Schema (and so openapi.yaml) counts 874.0 as the integer 874; a body that
        // failed only for writing integers that way is read again with them as integers.
        // The slow path costs nothing on the bodies that parse the first time.
        let mut value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|_| body_error(&error))?;
        if integral_numbers_as_integers(&mut value) {
            serde_json::from_value(value).map_err(|error| body_error(&error))
        } else {
            Err(body_error(&error))
        }
    })
}

/// Rewrites every number with a decimal point or exponent whose value is a whole number
/// (exactly representable, so at most 2^53) as that integer; true if any was rewritten.
fn integral_numbers_as_integers(value: &mut serde_json::Value) -> bool {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match value {
        serde_json::Value::Number(number) if number.is_f64() => {
            let float = number.as_f64().unwrap_or(f64::NAN);
            if float.fract() == 0.0 && float.abs() <= EXACT {
                // In range and whole, so the casts are exact.
                *number = if float < 0.0 {
                    serde_json::Number::from(float as i64)
                } else {
                    serde_json::Number::from(float as u64)
                };
                true
            } else {
                false
            }
        }
        serde_json::Value::Array(items) => items
            .iter_mut()
            .fold(false, |any, item| integral_numbers_as_integers(item) | any),
        serde_json::Value::Object(fields) => fields.values_mut().fold(false, |any, field| {
            integral_numbers_as_integers(field) | any
        }),
        _ => false,
    }
}

fn body_too_large() -> ApiError {
    ApiError::bad_request(format!("the request body exceeds {MAX_BODY_BYTES} bytes"))
}

/// Values that failed a parse constructor (ids, amounts) are `invalid_field`; everything
/// else about the body is `bad_request`. serde's message names the field either way.
fn body_error(error: &serde_json::Error) -> ApiError {
    let message = error.to_string();
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_owned();
    let is_value_rule = error.is_data()
        && !message.starts_with("missing field")
        && !message.starts_with("unknown field")
        && !message.starts_with("invalid type");
    let code = if is_value_rule {
        ErrorCode::InvalidField
    } else {
        ErrorCode::BadRequest
    };
    ApiError::new(code, format!("invalid request body: {message}"))
}

/// The token of an `Authorization: Bearer …` header.
pub fn bearer_token(request: &Request) -> Result<&str, ApiError> {
    let missing = || {
        ApiError::new(
            ErrorCode::Unauthenticated,
            "an `Authorization: Bearer <token>` header is required",
        )
    };
    let value = request.headers().get("authorization").ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| missing())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(missing());
    }
    Ok(token.trim())
}

/// The client's IP address from the host's `spin-client-addr` header (`ip:port`). Spin keeps
/// any `spin-client-addr` the client sent and appends its own after it, so only the last
/// value is the host's: the first would let a client pick the address it is limited by.
pub fn client_ip(request: &Request) -> Option<&str> {
    let address = request
        .headers()
        .get_all("spin-client-addr")
        .iter()
        .next_back()?
        .to_str()
        .ok()?;
    let ip = address.rsplit_once(':').map_or(address, |(ip, _port)| ip);
    Some(ip.trim_start_matches('[').trim_end_matches(']'))
}

/// The value of query parameter `name`, if present.
pub fn query_param<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.uri().query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

/// The wall clock, for the core's rules. Before 1970 cannot happen on a running host.
pub fn now() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now())
}

/// `exchange`'s answer, or `None` when it takes longer than `timeout`: an outbound call
/// that must not hold a request up (the payment gateway, the bridge's metrics).
pub async fn within<T>(
    timeout: std::time::Duration,
    exchange: impl std::future::Future<Output = Option<T>>,
) -> Option<T> {
    let timer = spin_sdk::time::sleep(timeout);
    match futures::future::select(Box::pin(exchange), Box::pin(timer)).await {
        futures::future::Either::Left((answer, _)) => answer,
        futures::future::Either::Right(((), _)) => None,
    }
}

/// Configuration from Spin variables, loaded on an instance's first request and kept for
/// its life. A broken configuration is the operator's error: requests answer 503 and the log
/// names the variable, never its value.
pub mod config {
    use std::future::Future;
    use std::sync::OnceLock;

    use spin_sdk::variables;
    use ticketing_core::ApiError;

    /// The value in `cell`, loading it with `load` first if this instance has none yet.
    pub async fn once<T: Send + Sync>(
        cell: &'static OnceLock<T>,
        component: &str,
        load: impl Future<Output = Result<T, String>>,
    ) -> Result<&'static T, ApiError> {
        if let Some(config) = cell.get() {
            return Ok(config);
        }
        let config = load.await.map_err(|problem| {
            ApiError::internal(format!("{component} configuration: {problem}"))
        })?;
        Ok(cell.get_or_init(|| config))
    }

    /// The key that signs queue tickets and passes, from `pass_signing_key`.
    pub async fn pass_key() -> Result<ticketing_core::pass::PassKey, String> {
        ticketing_core::pass::PassKey::new(text("pass_signing_key").await?.as_bytes())
            .map_err(|e| format!("variable pass_signing_key: {e}"))
    }

    /// The key that guards the operators' endpoints, from `admin_key`.
    pub async fn admin_key() -> Result<ticketing_core::admin::AdminKey, String> {
        ticketing_core::admin::AdminKey::new(&text("admin_key").await?)
            .map_err(|e| format!("variable admin_key: {e}"))
    }

    pub async fn text(name: &str) -> Result<String, String> {
        variables::get(name)
            .await
            .map_err(|error| format!("variable {name}: {error:?}"))
    }

    /// A whole number within `range`.
    pub async fn number<T>(name: &str, range: std::ops::RangeInclusive<T>) -> Result<T, String>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Debug,
    {
        let value: T = text(name)
            .await?
            .trim()
            .parse()
            .map_err(|_| format!("variable {name} must be a non-negative integer"))?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(format!("variable {name} must be within {range:?}"))
        }
    }
}
