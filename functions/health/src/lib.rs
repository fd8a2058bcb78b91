//! `GET /health`: `200 {"status":"ok"}` when the component runs and Redis and MySQL answer;
//! `503` naming the dependency that does not, so load balancers and fault drills see a
//! dependency outage as one.

mod store;

use serde_json::json;
use spin_sdk::http::{HeaderMap, HeaderValue, IntoResponse, Method, Request, StatusCode};
use spin_sdk::http_service;

fn json_response(status: StatusCode, body: serde_json::Value) -> (StatusCode, HeaderMap, String) {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    (status, headers, body.to_string())
}

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    if request.method() != Method::GET {
        let mut reply = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({ "error": "method_not_allowed", "message": "use GET /health",
                    "details": { "allowed": ["GET"] } }),
        );
        reply.1.insert("allow", HeaderValue::from_static("GET"));
        return reply;
    }
    let redis = store::redis_ok().await;
    let mysql = store::mysql_ok().await;
    let check = |ok: bool| if ok { "ok" } else { "unavailable" };
    let checks = json!({ "redis": check(redis), "mysql": check(mysql) });
    if redis && mysql {
        json_response(StatusCode::OK, json!({ "status": "ok", "checks": checks }))
    } else {
        let down = if redis { "mysql" } else { "redis" };
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({
                "error": "service_unavailable",
                "message": format!("{down} is unavailable"),
                "status": "unavailable",
                "checks": checks,
            }),
        )
    }
}
