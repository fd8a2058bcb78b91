//! The waiting room's HTTP API. Every user's first request takes a place in line; status
//! polls move the line (admission is lazy, inside the polls: no cron, no background worker)
//! and hand out a signed pass once the user is admitted.
//!
//! - `POST /api/queue/tokens` `{ userId, queueId? }` → `201` a new place, `200` the same
//!   live place again.
//! - `GET /api/queue/status` with `Authorization: Bearer <queue token>` → `WAITING`,
//!   `ACTIVE` with a pass, or `EXPIRED` with a reason. A `WAITING` answer says when to poll
//!   again (`pollAfterMs` and `Retry-After`, from the core's `PollPacing`): about every
//!   second near the head, up to the longest pause far back, the whole line within
//!   `queue_poll_budget_per_sec`.
//! - `GET /api/queue/head?queueId=…` → the line's front, the same for every fan, cacheable
//!   for a second (`Cache-Control: public, max-age=1`) so a CDN can serve it.
//! - `GET`/`PUT /api/admin/queue?queueId=…` with `Authorization: Bearer <admin key>`:
//!   read or change a queue's settings while it runs; `GET /api/admin/queues` lists every
//!   queue with its counts, for the operator's console.
//!
//! Each request is one Redis round trip (see the `waiting-room` crate).

mod config;

use std::time::Duration;

use http_kit::{Reply, bearer_token, client_ip, json, now, query_param, read_json};
use serde::Serialize;
use spin_sdk::http::{HeaderValue, Method, Request, StatusCode};
use ticketing_core::ApiError;
use ticketing_core::ids::QueueId;
use ticketing_core::pass::{Claims, TokenKind};
use ticketing_core::queue::{
    JoinReply, JoinRequest, PollPacing, QueueSettings, QueueSettingsPatch, QueueStatus,
};
use ticketing_core::time::Timestamp;
use waiting_room::{Caller, Place, QueueOverview, WaitingRoom};

http_kit::serve!(route);

async fn route(request: Request) -> Result<Reply, ApiError> {
    let path = request.uri().path().trim_end_matches('/');
    match path {
        "/api/queue/tokens" => {
            http_kit::only(&request, Method::POST)?;
            join(request).await
        }
        "/api/queue/status" => {
            http_kit::only(&request, Method::GET)?;
            status(request).await
        }
        "/api/queue/head" => {
            http_kit::only(&request, Method::GET)?;
            head(&request).await
        }
        "/api/admin/queues" => {
            http_kit::only(&request, Method::GET)?;
            admin_list(&request).await
        }
        "/api/admin/queue" => match *request.method() {
            Method::GET => admin_read(request).await,
            Method::PUT => admin_update(request).await,
            _ => Err(http_kit::wrong_method(
                &request,
                &[Method::GET, Method::PUT],
            )),
        },
        _ => Err(http_kit::no_route(&request)),
    }
}

async fn join(request: Request) -> Result<Reply, ApiError> {
    let config = config::get().await?;
    let address = client_ip(&request).map(str::to_owned);
    let body: JoinRequest = read_json(request).await?;
    let caller = Caller {
        user_id: body.user_id,
        address: address.as_deref(),
    };
    let room = WaitingRoom::connect(&config.redis_url).await?;
    let joined = room
        .join(
            &body.queue_id,
            &caller,
            &config.join_limits,
            &config.default_policy,
            now(),
        )
        .await?;
    let ticket = Claims::queue_ticket(
        body.queue_id.clone(),
        body.user_id,
        joined.position,
        joined.joined_at,
    );
    let status = if joined.is_new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json(
        status,
        &JoinReply {
            token: config.pass_key.sign(&ticket),
            queue_id: body.queue_id,
            user_id: body.user_id,
            position: joined.position.get(),
            joined_at: joined.joined_at,
            token_expires_at: ticket.expires_at,
        },
    ))
}

async fn status(request: Request) -> Result<Reply, ApiError> {
    let config = config::get().await?;
    let now = now();
    let ticket =
        config
            .pass_key
            .verify_any_queue(bearer_token(&request)?, TokenKind::QueueTicket, now)?;
    let room = WaitingRoom::connect(&config.redis_url).await?;
    let place = room
        .status(&ticket, client_ip(&request), &config.status_limits, now)
        .await?;
    let status = match place {
        Place::Waiting {
            ahead,
            policy,
            waiting,
        } => {
            let pacing = PollPacing::new(
                config.poll_budget_per_sec,
                config.longest_poll,
                policy.idle_timeout(),
            );
            let eta_seconds = policy.eta_secs(ahead);
            let pause = pacing.pause(ahead, waiting, Duration::from_secs(eta_seconds), jitter());
            QueueStatus::Waiting {
                position: ticket.position,
                ahead,
                eta_seconds,
                poll_after_ms: pause.as_millis() as u64,
            }
        }
        Place::Active {
            admitted_at,
            expires_at,
        } => QueueStatus::Active {
            pass: config.pass_key.sign(&Claims::pass(
                ticket.queue_id,
                ticket.user_id,
                ticket.position,
                admitted_at,
                expires_at,
            )),
            expires_at,
        },
        Place::Ended(reason) => QueueStatus::Expired { reason },
    };
    let mut reply = json(StatusCode::OK, &status);
    if let QueueStatus::Waiting { poll_after_ms, .. } = status {
        // Whole seconds, rounded up: a client that honours it never polls early.
        reply.1.insert(
            "retry-after",
            HeaderValue::from(poll_after_ms.div_ceil(1000)),
        );
    }
    Ok(reply)
}

/// 0.0 to 1.0 from the host's randomness, to spread the polls of fans who joined together.
fn jitter() -> f64 {
    let mut bytes = [0u8; 2];
    // wasi:random cannot fail on a working host; no spread is harmless.
    let _ = getrandom::fill(&mut bytes);
    f64::from(u16::from_le_bytes(bytes)) / f64::from(u16::MAX)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QueueReply {
    queue_id: QueueId,
    open: bool,
    rate_per_sec: u32,
    max_active: u32,
    pass_ttl_seconds: u64,
    idle_timeout_seconds: u64,
    joined: u64,
    waiting: u64,
    active: u64,
    admission_share_permille: u64,
    /// Counts since the queue was created; a console derives rates from two readings.
    admitted_total: u64,
    abandoned_total: u64,
}

impl QueueReply {
    fn new(queue_id: QueueId, overview: QueueOverview) -> Self {
        let policy = overview.settings.policy;
        Self {
            queue_id,
            open: overview.settings.open,
            rate_per_sec: policy.rate_per_sec(),
            max_active: policy.max_active(),
            pass_ttl_seconds: policy.pass_ttl().as_secs(),
            idle_timeout_seconds: policy.idle_timeout().as_secs(),
            joined: overview.joined,
            waiting: overview.waiting,
            active: overview.active,
            admission_share_permille: overview.share_permille,
            admitted_total: overview.admitted_total,
            abandoned_total: overview.abandoned_total,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HeadReply {
    queue_id: QueueId,
    open: bool,
    first_waiting_position: u64,
    last_position: u64,
    waiting: u64,
    /// The operator's admission rate, fans a second.
    rate_per_sec: u64,
    as_of: Timestamp,
}

/// How long a cache may serve the head: a second's staleness costs a fan a second of news,
/// never a turn (admission happens in the fan's own status poll).
const HEAD_CACHE_CONTROL: &str = "public, max-age=1";

/// The queue a request names (`?queueId=`), the default queue otherwise.
fn named_queue(request: &Request) -> Result<QueueId, ApiError> {
    Ok(match query_param(request, "queueId") {
        Some(id) => QueueId::parse(id)?,
        None => QueueId::default(),
    })
}

async fn head(request: &Request) -> Result<Reply, ApiError> {
    let config = config::get().await?;
    let queue = named_queue(request)?;
    let now = now();
    let head = WaitingRoom::connect(&config.redis_url)
        .await?
        .head(&queue, now)
        .await?;
    let mut reply = json(
        StatusCode::OK,
        &HeadReply {
            queue_id: queue,
            open: head.open,
            first_waiting_position: head.first_waiting,
            last_position: head.last_joined,
            waiting: head.waiting,
            rate_per_sec: head.rate_per_sec,
            as_of: now,
        },
    );
    reply.1.insert(
        "cache-control",
        HeaderValue::from_static(HEAD_CACHE_CONTROL),
    );
    Ok(reply)
}

/// The queue an admin request names (`?queueId=`), the default queue otherwise, after
/// checking the admin key.
async fn admin_queue(request: &Request) -> Result<(&'static config::Config, QueueId), ApiError> {
    let config = config::get().await?;
    config.admin_key.check(bearer_token(request)?)?;
    Ok((config, named_queue(request)?))
}

async fn admin_read(request: Request) -> Result<Reply, ApiError> {
    let (config, queue) = admin_queue(&request).await?;
    let room = WaitingRoom::connect(&config.redis_url).await?;
    let overview = room.overview(&queue, now()).await?;
    Ok(json(StatusCode::OK, &QueueReply::new(queue, overview)))
}

/// Every configured queue (and the default one) that exists, by id; a listed queue whose
/// data expired leaves the registry.
async fn admin_list(request: &Request) -> Result<Reply, ApiError> {
    let config = config::get().await?;
    config.admin_key.check(bearer_token(request)?)?;
    let room = WaitingRoom::connect(&config.redis_url).await?;
    let now = now();
    let mut queues = Vec::new();
    for queue in room.configured_queues().await? {
        match room.overview(&queue, now).await {
            Ok(overview) => queues.push(QueueReply::new(queue, overview)),
            Err(error) if error.code == ticketing_core::ErrorCode::NotFound => {
                room.forget_queue(&queue).await?;
            }
            Err(error) => return Err(error),
        }
    }
    Ok(json(StatusCode::OK, &QueueList { queues }))
}

#[derive(Serialize)]
struct QueueList {
    queues: Vec<QueueReply>,
}

/// Changes the named settings; a queue that does not exist yet is created from the
/// default policy, open unless the change says otherwise.
async fn admin_update(request: Request) -> Result<Reply, ApiError> {
    let (config, queue) = admin_queue(&request).await?;
    let patch: QueueSettingsPatch = read_json(request).await?;
    let room = WaitingRoom::connect(&config.redis_url).await?;
    let now = now();
    let current = match room.overview(&queue, now).await {
        Ok(overview) => overview.settings,
        Err(error) if error.code == ticketing_core::ErrorCode::NotFound => QueueSettings {
            open: true,
            policy: config.default_policy,
        },
        Err(error) => return Err(error),
    };
    let settings = patch.apply(current)?;
    let overview = room.configure(&queue, &settings, now).await?;
    Ok(json(StatusCode::OK, &QueueReply::new(queue, overview)))
}
