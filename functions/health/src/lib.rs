//! `GET /health`: `200 {"status":"ok"}` when the component runs and Redis and MySQL answer;
//! `503` naming the dependency that does not, so load balancers and fault drills see a
//! dependency outage as one.

mod store;

use http_kit::{Reply, json};
use serde_json::json;
use spin_sdk::http::{Method, Request, StatusCode};
use ticketing_core::ApiError;

http_kit::serve!(health);

async fn health(request: Request) -> Result<Reply, ApiError> {
    http_kit::only(&request, Method::GET)?;
    let redis = store::redis_ok().await;
    let mysql = store::mysql_ok().await;
    let check = |ok: bool| if ok { "ok" } else { "unavailable" };
    let checks = json!({ "redis": check(redis), "mysql": check(mysql) });
    if redis && mysql {
        Ok(json(
            StatusCode::OK,
            &json!({ "status": "ok", "checks": checks }),
        ))
    } else {
        let down = if redis { "mysql" } else { "redis" };
        Err(ApiError::unavailable(down).with_details(json!({ "checks": checks })))
    }
}
