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
//!   `queue_poll_budget_per_sec`. A queue that sells a concert (`concertId`) answers
//!   `SOLD_OUT` instead, and admits nobody, while the concert has no seat open to a hold
//!   (the bridge counts it about once a second); admission resumes when a seat comes back.
//! - A queue created with `opensAt` gathers fans until then: a join answers `201` with a
//!   draw entry (no position) and the draw's commitment, and the entry's status polls say
//!   `GATHERING`. The first poll after the opening runs the draw (`ticketing_core::draw`),
//!   which places the entrants ahead of everyone who joins later; from then on the entry
//!   polls like a ticket. `GET /api/queue/draw?queueId=…[&userId=…]` publishes the draw:
//!   the commitment, and after the draw the seed, the order and the user's rank.
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
use ticketing_core::draw::{Commitment, DrawSeed, PublishedDraw, SEED_BYTES};
use ticketing_core::ids::{ConcertId, QueueId, UserId};
use ticketing_core::pass::{Claims, TokenKind};
use ticketing_core::queue::{
    DrawEntryReply, JoinReply, JoinRequest, PollPacing, Position, QueueSettings,
    QueueSettingsPatch, QueueStatus,
};
use ticketing_core::sale::Opening;
use ticketing_core::time::Timestamp;
use waiting_room::{Caller, EntryStatus, Gathered, Joining, Place, QueueOverview, WaitingRoom};

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
        "/api/queue/draw" => {
            http_kit::only(&request, Method::GET)?;
            draw(&request).await
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
    let joined = match joined {
        Joining::Placed(joined) => joined,
        Joining::Entered(entered) => {
            let entry = Claims::draw_entry(
                body.queue_id.clone(),
                body.user_id,
                entered.entry,
                entered.joined_at,
                entered.opening.opens_at(),
            );
            return Ok(json(
                created_or_ok(entered.is_new),
                &DrawEntryReply {
                    token: config.pass_key.sign(&entry),
                    queue_id: body.queue_id,
                    user_id: body.user_id,
                    entry: entered.entry.get(),
                    opens_at: entered.opening.opens_at(),
                    commitment: entered.commitment,
                    joined_at: entered.joined_at,
                    token_expires_at: entry.expires_at,
                },
            ));
        }
    };
    let ticket = Claims::queue_ticket(
        body.queue_id.clone(),
        body.user_id,
        joined.position,
        joined.joined_at,
    );
    Ok(json(
        created_or_ok(joined.is_new),
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

fn created_or_ok(is_new: bool) -> StatusCode {
    if is_new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

async fn status(request: Request) -> Result<Reply, ApiError> {
    let config = config::get().await?;
    let now = now();
    let ticket = config
        .pass_key
        .verify_waiting(bearer_token(&request)?, now)?;
    let room = WaitingRoom::connect(&config.redis_url).await?;
    let address = client_ip(&request);
    let status = if ticket.kind == TokenKind::DrawEntry {
        let mut entry = room
            .entry_status(&ticket, address, &config.status_limits, now)
            .await?;
        if let EntryStatus::Drawing(_) = entry {
            room.run_draw(&ticket.queue_id, now).await?;
            entry = room
                .entry_status(&ticket, address, &config.status_limits, now)
                .await?;
        }
        match entry {
            EntryStatus::Gathering(gathered) | EntryStatus::Drawing(gathered) => {
                gathering(config, &ticket, &gathered, now)
            }
            EntryStatus::Placed { position, place } => answer(config, &ticket, position, place),
        }
    } else {
        let place = room
            .status(&ticket, address, &config.status_limits, now)
            .await?;
        answer(config, &ticket, ticket.position, place)
    };
    let status = name_the_concert_sold_out(&room, &ticket, status).await?;
    let mut reply = json(StatusCode::OK, &status);
    if let QueueStatus::Waiting { poll_after_ms, .. }
    | QueueStatus::SoldOut { poll_after_ms, .. }
    | QueueStatus::Gathering { poll_after_ms, .. } = status
    {
        // Whole seconds, rounded up: a client that honours it never polls early.
        reply.1.insert(
            "retry-after",
            HeaderValue::from(poll_after_ms.div_ceil(1000)),
        );
    }
    Ok(reply)
}

/// A `SOLD_OUT` answer names the concert sold out, so the fan can join its waitlist: one
/// read of the queue's meta hash, on answers paced seconds apart.
async fn name_the_concert_sold_out(
    room: &WaitingRoom,
    ticket: &Claims,
    status: QueueStatus,
) -> Result<QueueStatus, ApiError> {
    Ok(match status {
        QueueStatus::SoldOut {
            position,
            ahead,
            poll_after_ms,
            ..
        } => QueueStatus::SoldOut {
            position,
            ahead,
            poll_after_ms,
            concert_id: room
                .sale(&ticket.queue_id)
                .await?
                .map(|(concert, _)| concert),
        },
        other => other,
    })
}

/// The status of an entrant the draw has not placed yet.
fn gathering(
    config: &config::Config,
    entry: &Claims,
    gathered: &Gathered,
    now: Timestamp,
) -> QueueStatus {
    let pause = gathered.opening.pause(
        now,
        config.longest_poll,
        gathered.entrants,
        config.poll_budget_per_sec,
        jitter(),
    );
    QueueStatus::Gathering {
        opens_at: gathered.opening.opens_at(),
        entry: entry.position.get(),
        entrants: gathered.entrants,
        commitment: gathered.commitment,
        poll_after_ms: pause.as_millis() as u64,
    }
}

/// The status of the place at `position`, held by the holder of `ticket` (a queue ticket,
/// or a draw entry the draw placed there).
fn answer(
    config: &config::Config,
    ticket: &Claims,
    position: Position,
    place: Place,
) -> QueueStatus {
    match place {
        Place::Waiting {
            ahead,
            policy,
            waiting,
            pace,
            sold_out,
        } => {
            let pacing = PollPacing::new(
                config.poll_budget_per_sec,
                config.longest_poll,
                policy.idle_timeout(),
            );
            if sold_out {
                let pause = pacing.pause_without_turn(ahead, waiting, jitter());
                return QueueStatus::SoldOut {
                    position,
                    ahead,
                    poll_after_ms: pause.as_millis() as u64,
                    concert_id: None,
                };
            }
            let eta_seconds = pace.eta_secs(&policy, ahead);
            let pause = pacing.pause(ahead, waiting, Duration::from_secs(eta_seconds), jitter());
            QueueStatus::Waiting {
                position,
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
                ticket.queue_id.clone(),
                ticket.user_id,
                position,
                admitted_at,
                expires_at,
            )),
            expires_at,
        },
        Place::Ended(reason) => QueueStatus::Expired { reason },
    }
}

/// The published draw of a scheduled queue, with the rank of `userId` when one is named.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DrawReply {
    #[serde(flatten)]
    draw: PublishedDraw,
    #[serde(skip_serializing_if = "Option::is_none")]
    rank: Option<usize>,
}

/// Until the draw the answer changes with every entrant; once revealed, never again.
const DRAW_PENDING_CACHE_CONTROL: &str = "public, max-age=1";
const DRAW_REVEALED_CACHE_CONTROL: &str = "public, max-age=3600, immutable";

async fn draw(request: &Request) -> Result<Reply, ApiError> {
    let config = config::get().await?;
    let queue = named_queue(request)?;
    let user = query_param(request, "userId")
        .map(UserId::parse)
        .transpose()?;
    let room = WaitingRoom::connect(&config.redis_url).await?;
    let draw = room.published_draw(&queue, now()).await?;
    let cache_control = if draw.seed.is_some() {
        DRAW_REVEALED_CACHE_CONTROL
    } else {
        DRAW_PENDING_CACHE_CONTROL
    };
    let rank = user.and_then(|user| draw.rank_of(user));
    let mut reply = json(StatusCode::OK, &DrawReply { draw, rank });
    reply
        .1
        .insert("cache-control", HeaderValue::from_static(cache_control));
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
    /// A scheduled queue's opening, its draw's commitment, entrants and places drawn.
    #[serde(skip_serializing_if = "Option::is_none")]
    opens_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    commitment: Option<Commitment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entrants: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    drawn: Option<u64>,
    /// The concert the queue sells, and its seats open to a hold at the last count.
    #[serde(skip_serializing_if = "Option::is_none")]
    concert_id: Option<ConcertId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    holdable_seats: Option<u64>,
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
            opens_at: overview.draw.map(|draw| draw.opening.opens_at()),
            commitment: overview.draw.map(|draw| draw.commitment),
            entrants: overview.draw.map(|draw| draw.entrants),
            drawn: overview.draw.map(|draw| draw.drawn),
            concert_id: overview.selling.map(|selling| selling.concert),
            holdable_seats: overview.selling.and_then(|selling| selling.holdable),
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
    let existing = match room.overview(&queue, now).await {
        Ok(overview) => Some(overview.settings),
        Err(error) if error.code == ticketing_core::ErrorCode::NotFound => None,
        Err(error) => return Err(error),
    };
    let opening = patch
        .opens_at
        .map(|opens_at| Opening::schedule(opens_at, existing.is_some(), now))
        .transpose()?;
    let settings = patch.apply(existing.unwrap_or(QueueSettings {
        open: true,
        policy: config.default_policy,
    }))?;
    let seed = opening.map(|_| draw_seed()).transpose()?;
    let scheduled = opening.zip(seed.as_ref());
    let mut overview = room.configure(&queue, &settings, scheduled, now).await?;
    if let Some(concert) = patch.concert_id {
        overview = room.sell(&queue, concert, now).await?;
    }
    Ok(json(StatusCode::OK, &QueueReply::new(queue, overview)))
}

/// A new draw's secret, from the host's cryptographic randomness (wasi:random).
fn draw_seed() -> Result<DrawSeed, ApiError> {
    let mut bytes = [0u8; SEED_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|error| ApiError::internal(format!("no randomness for the draw: {error}")))?;
    Ok(DrawSeed::from_bytes(bytes))
}
