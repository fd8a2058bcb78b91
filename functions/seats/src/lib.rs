//! Concerts, schedules, seat maps and seat holds.
//!
//! Reads come from a Redis cache whose TTLs are the seed documents' upper bounds (concert
//! list 5 min, a concert 10 min, its schedules 3 min, a seat map 10 s) and which every hold
//! and release invalidates, so a held seat leaves the map at once. Holds need an active pass
//! from the queue; the user is the pass's, never the body's.
//!
//! - `GET /api/concerts`, `/api/concerts/{id}`, `/api/concerts/{id}/schedules`
//! - `GET /api/concerts/ranking?window=all|3d|7d`
//! - `POST /api/concerts/{id}/waitlist` with a queue ticket (or draw entry) of a queue
//!   selling the concert, once that queue counts it sold out: a place on its waitlist
//!   (`core::waitlist`);
//!   `GET` the same path: the place, and the seat offered once one came back
//! - `GET /api/schedules/{id}/seats`
//! - `POST /api/reservations` `{ scheduleId, seatIds }` → `201`, or `409` naming taken seats
//! - `GET`, `DELETE /api/reservations/{id}` (the owner only; a waitlist offer may be
//!   declined with the fan's queue ticket)
//! - `GET /api/admin/schedules?concertId=` with the admin key: a concert's schedules (or
//!   the upcoming ones) with their seats free, held and sold, and their sales, for the
//!   operator's console

mod config;
mod store;

use std::collections::BTreeSet;

use http_kit::{Reply, bearer_token, json, json_text, now, query_param, read_json};
use serde::{Deserialize, Serialize};
use spin_sdk::http::{HeaderValue, Method, Request, StatusCode};
use sql_kit::Db;
use ticketing_core::ids::{ConcertId, ReservationId, ScheduleId, SeatId, UserId};
use ticketing_core::money::Amount;
use ticketing_core::pass::{Claims, TokenKind};
use ticketing_core::ranking::RankingWindow;
use ticketing_core::sale::Stock;
use ticketing_core::seats::{ReservationStatus, SeatSelection};
use ticketing_core::time::Timestamp;
use ticketing_core::waitlist::{self, EntryState, WaitlistError, ensure_may_join, hold_admission};
use ticketing_core::{ApiError, ErrorCode, cache};
use waiting_room::WaitingRoom;

use crate::config::Config;
use crate::store::{Cache, Lookup, ReservationView};

/// Cache lifetimes, the seed documents' values as upper bounds.
const CONCERTS_TTL_MS: u64 = 5 * 60_000;
const CONCERT_TTL_MS: u64 = 10 * 60_000;
const SCHEDULES_TTL_MS: u64 = 3 * 60_000;
const SEAT_MAP_TTL_MS: u64 = 10_000;
/// A schedule's seats never change once created: an hour bounds what an operator's edit in
/// MySQL would take to show.
const SEAT_LAYOUT_TTL_MS: u64 = 60 * 60_000;

http_kit::serve!(route);

async fn route(request: Request) -> Result<Reply, ApiError> {
    let path = request.uri().path().to_owned();
    match http_kit::path_segments(&path).as_slice() {
        ["api", "concerts"] => {
            http_kit::only(&request, Method::GET)?;
            concerts().await
        }
        ["api", "concerts", "ranking"] => {
            http_kit::only(&request, Method::GET)?;
            ranking(&request).await
        }
        ["api", "concerts", id] => {
            http_kit::only(&request, Method::GET)?;
            concert(ConcertId::parse(id)?).await
        }
        ["api", "concerts", concert, "schedules"] => {
            http_kit::only(&request, Method::GET)?;
            schedules(ConcertId::parse(concert)?).await
        }
        ["api", "concerts", concert, "waitlist"] => {
            let concert = ConcertId::parse(concert)?;
            match *request.method() {
                Method::GET => show_waitlist_entry(&request, concert).await,
                Method::POST => join_waitlist(&request, concert).await,
                _ => Err(http_kit::wrong_method(
                    &request,
                    &[Method::GET, Method::POST],
                )),
            }
        }
        ["api", "schedules", schedule, "seats"] => {
            http_kit::only(&request, Method::GET)?;
            seat_map(ScheduleId::parse(schedule)?).await
        }
        ["api", "reservations"] => {
            http_kit::only(&request, Method::POST)?;
            reserve(request).await
        }
        ["api", "admin", "schedules"] => {
            http_kit::only(&request, Method::GET)?;
            schedule_sales(&request).await
        }
        ["api", "reservations", reservation] => {
            let reservation = ReservationId::parse(reservation)?;
            match *request.method() {
                Method::GET => show_reservation(&request, reservation).await,
                Method::DELETE => cancel_reservation(&request, reservation).await,
                _ => Err(http_kit::wrong_method(
                    &request,
                    &[Method::GET, Method::DELETE],
                )),
            }
        }
        _ => Err(http_kit::no_route(&request)),
    }
}

async fn connect() -> Result<(&'static Config, Cache), ApiError> {
    let config = config::get().await?;
    let cache = Cache::connect(&config.redis_url).await?;
    Ok((config, cache))
}

async fn database(config: &Config) -> Result<Db, ApiError> {
    Ok(Db::open(&config.mysql_url).await?)
}

fn to_json(value: &impl Serialize) -> Result<String, ApiError> {
    serde_json::to_string(value)
        .map_err(|error| ApiError::internal(format!("encoding a reply: {error}")))
}

// ---- catalog reads ----------------------------------------------------------------------

#[derive(Serialize)]
struct ConcertList {
    concerts: Vec<store::Concert>,
}

/// Where a read's body came from. Sent as `x-cache`, so a load test measures the cache hit
/// rate (the seeds ask >= 95 %) from the answers themselves.
#[derive(Clone, Copy, Debug)]
enum CacheOutcome {
    Hit,
    /// Past its time to live, answered while another reader rebuilds it.
    Stale,
    /// Rebuilt by another reader while this one waited: no database read of its own.
    Shared,
    /// This reader read the database.
    Miss,
}

fn cached_reply((body, outcome): (String, CacheOutcome)) -> Reply {
    let mut reply = json_text(StatusCode::OK, body);
    let value = match outcome {
        CacheOutcome::Hit => "hit",
        CacheOutcome::Stale => "stale",
        CacheOutcome::Shared => "shared",
        CacheOutcome::Miss => "miss",
    };
    reply.1.insert("x-cache", HeaderValue::from_static(value));
    reply
}

/// Reads `key` through the cache with one rebuild at a time: the reader that takes the
/// rebuild lease runs `rebuild` (which stores the body), and the others answer with the
/// stale body if the grace keeps one, or else poll the cache for the rebuilt one (backing
/// off, `cache::REBUILD_POLL_MS`) instead of all querying MySQL at once. A cold cache under
/// a crowd (a flush, the first seconds after a deploy) would otherwise send every concurrent
/// reader to the database and exhaust its connections, and a popular key's expiry would
/// queue its readers every time to live.
async fn read_through<Miss>(
    cache: &Cache,
    key: &str,
    lookup: impl AsyncFn() -> Result<Lookup<Miss>, ApiError>,
    rebuild: impl AsyncFn(Miss) -> Result<String, ApiError>,
) -> Result<(String, CacheOutcome), ApiError> {
    let mut waits = cache::REBUILD_POLL_MS.iter();
    let mut waited = false;
    loop {
        let (stale, miss) = match lookup().await? {
            Lookup::Hit(body) if waited => return Ok((body, CacheOutcome::Shared)),
            Lookup::Hit(body) => return Ok((body, CacheOutcome::Hit)),
            Lookup::Stale(body, miss) => (Some(body), miss),
            Lookup::Miss(miss) => (None, miss),
        };
        let claimed = cache.claim_rebuild(key).await;
        let wait = match (claimed, stale) {
            (false, Some(body)) => return Ok((body, CacheOutcome::Stale)),
            (false, None) => waits.next(),
            (true, _) => None,
        };
        let Some(&wait_ms) = wait else {
            let body = rebuild(miss).await;
            if claimed {
                cache.end_rebuild(key).await;
            }
            return Ok((body?, CacheOutcome::Miss));
        };
        waited = true;
        spin_sdk::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
    }
}

/// The cached body of a plain catalog `key`, rebuilt from `read` for `ttl_ms` on a miss.
async fn cached(
    cache: &Cache,
    key: &str,
    ttl_ms: u64,
    read: impl AsyncFn() -> Result<String, ApiError>,
) -> Result<(String, CacheOutcome), ApiError> {
    read_through(
        cache,
        key,
        async || cache.get(key).await,
        async |()| {
            let body = read().await?;
            cache.put(key, &body, ttl_ms).await;
            Ok(body)
        },
    )
    .await
}

/// The concert list's JSON, from the cache or freshly read.
async fn concert_list_json(
    config: &Config,
    cache: &Cache,
) -> Result<(String, CacheOutcome), ApiError> {
    cached(cache, &cache::concerts_key(), CONCERTS_TTL_MS, async || {
        let db = database(config).await?;
        to_json(&ConcertList {
            concerts: store::concerts(&db).await?,
        })
    })
    .await
}

async fn concerts() -> Result<Reply, ApiError> {
    let (config, cache) = connect().await?;
    Ok(cached_reply(concert_list_json(config, &cache).await?))
}

async fn concert(concert: ConcertId) -> Result<Reply, ApiError> {
    let (config, cache) = connect().await?;
    let key = cache::concert_key(concert);
    let body = cached(&cache, &key, CONCERT_TTL_MS, async || {
        let db = database(config).await?;
        let found = store::concert(&db, concert)
            .await?
            .ok_or_else(|| ApiError::not_found("concert", concert))?;
        to_json(&found)
    })
    .await?;
    Ok(cached_reply(body))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ScheduleList {
    concert_id: ConcertId,
    schedules: Vec<store::Schedule>,
}

async fn schedules(concert: ConcertId) -> Result<Reply, ApiError> {
    let (config, cache) = connect().await?;
    let key = cache::schedules_key(concert);
    let body = cached(&cache, &key, SCHEDULES_TTL_MS, async || {
        let db = database(config).await?;
        if store::concert(&db, concert).await?.is_none() {
            return Err(ApiError::not_found("concert", concert));
        }
        to_json(&ScheduleList {
            concert_id: concert,
            schedules: store::schedules(&db, concert, now()).await?,
        })
    })
    .await?;
    Ok(cached_reply(body))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SeatMapReply<'a> {
    schedule_id: ScheduleId,
    concert_id: ConcertId,
    total_seats: u64,
    available_seats: usize,
    /// The seats open to a hold, by seat number.
    seats: Vec<&'a store::Seat>,
    /// The others, held or sold, by seat number: a page draws the whole hall.
    taken_seats: Vec<&'a store::Seat>,
}

async fn seat_map(schedule: ScheduleId) -> Result<Reply, ApiError> {
    let (config, cache) = connect().await?;
    let (key, _) = cache::seat_map_keys(schedule);
    let body = read_through(
        &cache,
        &key,
        async || cache.seat_map(schedule).await,
        async |version: String| {
            // The connection is held for the MySQL reads alone, not for the cache calls and
            // the JSON around them: in a burst, holds of this instance wait for it.
            let cached_layout = cached_seat_layout(&cache, schedule).await?;
            let db = database(config).await?;
            let layout = match cached_layout {
                Some(layout) => layout,
                None => read_seat_layout(&cache, &db, schedule).await?,
            };
            let free = store::holdable_seat_numbers(&db, schedule, now()).await?;
            drop(db);
            let (seats, taken_seats): (Vec<&store::Seat>, _) = layout
                .seats
                .iter()
                .partition(|seat| free.contains(seat.seat_no));
            let body = to_json(&SeatMapReply {
                schedule_id: schedule,
                concert_id: layout.concert_id,
                total_seats: layout.total_seats,
                available_seats: seats.len(),
                seats,
                taken_seats,
            })?;
            cache
                .put_seat_map(schedule, &version, &body, SEAT_MAP_TTL_MS)
                .await;
            Ok(body)
        },
    )
    .await?;
    Ok(cached_reply(body))
}

/// `schedule`'s seats from the cache, if there and readable.
async fn cached_seat_layout(
    cache: &Cache,
    schedule: ScheduleId,
) -> Result<Option<store::SeatLayout>, ApiError> {
    let key = cache::seat_layout_key(schedule);
    Ok(match cache.get(&key).await? {
        Lookup::Hit(body) | Lookup::Stale(body, ()) => serde_json::from_str(&body).ok(),
        Lookup::Miss(()) => None,
    })
}

/// `schedule`'s seats from MySQL, then cached.
async fn read_seat_layout(
    cache: &Cache,
    db: &Db,
    schedule: ScheduleId,
) -> Result<store::SeatLayout, ApiError> {
    let layout = store::seat_layout(db, schedule)
        .await?
        .ok_or_else(|| ApiError::not_found("schedule", schedule))?;
    cache
        .put(
            &cache::seat_layout_key(schedule),
            &to_json(&layout)?,
            SEAT_LAYOUT_TTL_MS,
        )
        .await;
    Ok(layout)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RankingEntry {
    rank: usize,
    concert_id: ConcertId,
    title: String,
    seats_sold: u64,
}

#[derive(Serialize)]
struct RankingReply {
    window: &'static str,
    ranking: Vec<RankingEntry>,
}

#[derive(Deserialize)]
struct CachedConcerts {
    concerts: Vec<CachedConcert>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CachedConcert {
    concert_id: ConcertId,
    title: String,
}

async fn ranking(request: &Request) -> Result<Reply, ApiError> {
    let window = RankingWindow::parse(query_param(request, "window").unwrap_or("all"))?;
    let (config, cache) = connect().await?;
    let top = cache.ranking(window, now()).await?;
    let titles: Vec<CachedConcert> = if top.is_empty() {
        Vec::new()
    } else {
        let (list, _) = concert_list_json(config, &cache).await?;
        serde_json::from_str::<CachedConcerts>(&list)
            .map(|c| c.concerts)
            .unwrap_or_default()
    };
    let ranking = top
        .into_iter()
        .enumerate()
        .map(|(index, (concert_id, seats_sold))| RankingEntry {
            rank: index + 1,
            title: titles
                .iter()
                .find(|c| c.concert_id == concert_id)
                .map(|c| c.title.clone())
                .unwrap_or_default(),
            concert_id,
            seats_sold,
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &RankingReply {
            window: window.as_str(),
            ranking,
        },
    ))
}

// ---- reservations -------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReserveRequest {
    schedule_id: ScheduleId,
    seat_ids: Vec<SeatId>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReservationReply {
    reservation_id: ReservationId,
    user_id: UserId,
    schedule_id: ScheduleId,
    status: ReservationStatus,
    seats: Vec<store::Seat>,
    amount: Amount,
    expires_at: Timestamp,
}

impl ReservationReply {
    fn new(view: ReservationView, now: Timestamp) -> Self {
        let reservation = view.reservation;
        Self {
            status: reservation.effective_status(now),
            reservation_id: reservation.id,
            user_id: reservation.user_id,
            schedule_id: reservation.schedule_id,
            seats: view.seats,
            amount: reservation.amount,
            expires_at: reservation.expires_at,
        }
    }
}

/// The pass in the `Authorization` header, checked by signature, kind and expiry.
fn pass(config: &Config, request: &Request, now: Timestamp) -> Result<Claims, ApiError> {
    Ok(config
        .pass_key
        .verify_any_queue(bearer_token(request)?, TokenKind::Pass, now)?)
}

async fn reserve(request: Request) -> Result<Reply, ApiError> {
    let (config, cache) = connect().await?;
    let now = now();
    let pass = pass(config, &request, now)?;
    let body: ReserveRequest = read_json(request).await?;
    let selection = SeatSelection::new(body.schedule_id, &body.seat_ids, &config.hold_policy)?;
    let room = WaitingRoom::connect(&config.redis_url).await?;
    room.ensure_pass_active(&pass, now).await?;
    refuse_seats_taken_on_map(&cache, &selection).await?;
    let opening = database(config);
    let db = waiting_room::connect_watching_strain(&config.redis_url, &pass, opening, now).await?;
    let (view, schedule) =
        store::hold(&db, &selection, pass.user_id, &config.hold_policy, now).await?;
    // Back to the instance's other requests before the cache and the queue are told.
    drop(db);
    invalidate(&cache, schedule).await;
    // The hold stands either way: unreported, the pass speaks for a seat until it ends, and
    // the line only admits more slowly meanwhile.
    if let Err(error) = room.held(&pass, now).await {
        eprintln!(
            "seats: reporting hold {} to queue {}: {error:?}",
            view.reservation.id, pass.queue_id
        );
    }
    Ok(json(StatusCode::CREATED, &ReservationReply::new(view, now)))
}

// ---- waitlist ------------------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WaitlistReply {
    concert_id: ConcertId,
    user_id: UserId,
    state: EntryState,
    joined_at: Timestamp,
    /// Fans waiting before this one; 0 once offered or passed over.
    ahead: u64,
    /// The seat offered, as the reservation holding it (paid, lapsed or still open).
    offer: Option<ReservationReply>,
    /// When to look again while waiting (also sent as `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    poll_after_ms: Option<u64>,
}

impl WaitlistReply {
    fn new(concert: ConcertId, user: UserId, entry: store::WaitlistEntry, now: Timestamp) -> Self {
        Self {
            concert_id: concert,
            user_id: user,
            state: entry.state,
            joined_at: entry.joined_at,
            ahead: entry.ahead,
            offer: entry.offer.map(|view| ReservationReply::new(view, now)),
            poll_after_ms: (entry.state == EntryState::Waiting)
                .then(|| waitlist::poll_pause(entry.ahead).as_millis() as u64),
        }
    }

    /// The JSON answer, with `Retry-After` while the fan waits.
    fn reply(&self, status: StatusCode) -> Reply {
        let mut reply = json(status, self);
        if let Some(ms) = self.poll_after_ms {
            let seconds = ms.div_ceil(1000).to_string();
            if let Ok(value) = HeaderValue::from_str(&seconds) {
                reply.1.insert("retry-after", value);
            }
        }
        reply
    }
}

/// A place on a sold-out concert's waitlist for the fan of a queue ticket (or draw entry)
/// of a queue selling it. Joining again answers the place already taken.
async fn join_waitlist(request: &Request, concert: ConcertId) -> Result<Reply, ApiError> {
    let config = config::get().await?;
    let now = now();
    let fan = config
        .pass_key
        .verify_waiting(bearer_token(request)?, now)?;
    // The queue's own count, the one that told the fan SOLD_OUT: no MySQL count per join.
    let sale = WaitingRoom::connect(&config.redis_url)
        .await?
        .sale(&fan.queue_id)
        .await?;
    let (sells, open) = match sale {
        Some((sold, open)) => (sold == concert, open),
        None => (false, Stock { holdable: u64::MAX }),
    };
    let db = database(config).await?;
    // A fan already on the list gets their place back, whatever the count says now.
    let (status, entry) = match ensure_may_join(concert, &fan.queue_id, sells, open) {
        Ok(()) => {
            let (created, entry) = store::join_waitlist(&db, concert, fan.user_id, now).await?;
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, entry)
        }
        Err(refused) => {
            let entry = store::waitlist_entry(&db, concert, fan.user_id)
                .await?
                .ok_or(refused)?;
            (StatusCode::OK, entry)
        }
    };
    Ok(WaitlistReply::new(concert, fan.user_id, entry, now).reply(status))
}

/// The fan's place on the concert's waitlist, and the seat offered to them once one came back.
async fn show_waitlist_entry(request: &Request, concert: ConcertId) -> Result<Reply, ApiError> {
    let config = config::get().await?;
    let now = now();
    let fan = config
        .pass_key
        .verify_waiting(bearer_token(request)?, now)?;
    let db = database(config).await?;
    let entry = store::waitlist_entry(&db, concert, fan.user_id)
        .await?
        .ok_or(WaitlistError::NotListed(concert))?;
    Ok(WaitlistReply::new(concert, fan.user_id, entry, now).reply(StatusCode::OK))
}

/// The schedules of `?concertId=`, or the upcoming ones, with their seats by state and
/// their sales, read from MySQL each time (the console polls it every few seconds: a few
/// indexed counts per schedule).
async fn schedule_sales(request: &Request) -> Result<Reply, ApiError> {
    let config = config::get().await?;
    config.admin_key.check(bearer_token(request)?)?;
    let concert = query_param(request, "concertId")
        .map(ConcertId::parse)
        .transpose()?;
    let db = database(config).await?;
    let schedules = store::schedule_sales(&db, concert, now()).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "schedules": schedules }),
    ))
}

/// The seat ids a cached seat map or layout lists.
#[derive(Deserialize)]
struct ListedSeats {
    seats: Vec<ListedSeat>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListedSeat {
    seat_id: SeatId,
}

impl ListedSeats {
    fn parse(body: &str) -> Option<BTreeSet<SeatId>> {
        let listed: Self = serde_json::from_str(body).ok()?;
        Some(listed.seats.into_iter().map(|s| s.seat_id).collect())
    }
}

/// Refuses a hold from Redis when the schedule's seat map, within its TTL, shows a chosen
/// seat taken, so the many losers of a rush never wait for a MySQL connection (under Spin,
/// whose connections per app are capped, they used to queue in front of the winners'
/// payments). Such a map is no older than the last committed change to the schedule's
/// seats: every change bumps its version, and a map read before one is not stored. A map
/// that is missing, past its TTL or unreadable leaves the decision to MySQL.
async fn refuse_seats_taken_on_map(
    cache: &Cache,
    selection: &SeatSelection,
) -> Result<(), ApiError> {
    let schedule = selection.schedule();
    // The layout is read only when there is a fresh map to judge by.
    let Ok(Lookup::Hit(map)) = cache.seat_map(schedule).await else {
        return Ok(());
    };
    let Ok(Lookup::Hit(layout)) = cache.get(&cache::seat_layout_key(schedule)).await else {
        return Ok(());
    };
    let (Some(free), Some(schedule_seats)) =
        (ListedSeats::parse(&map), ListedSeats::parse(&layout))
    else {
        return Ok(());
    };
    Ok(selection.ensure_free_on_map(&schedule_seats, &free)?)
}

/// A stale cache only lasts its TTL, so a failure to invalidate is logged, not returned:
/// the hold itself is committed.
async fn invalidate(cache: &Cache, schedule: store::ScheduleRef) {
    if let Err(error) = cache.invalidate(schedule).await {
        eprintln!(
            "seats: invalidating schedule {}: {error}",
            schedule.schedule_id
        );
    }
}

/// The reservation, if it exists and belongs to the pass's user.
async fn owned_reservation(
    config: &Config,
    holder: &Claims,
    reservation: ReservationId,
) -> Result<(Db, ReservationView), ApiError> {
    let db = database(config).await?;
    let view = store::reservation(&db, reservation)
        .await?
        .ok_or_else(|| ApiError::not_found("reservation", reservation))?;
    view.reservation.ensure_owner(holder.user_id)?;
    Ok((db, view))
}

async fn show_reservation(
    request: &Request,
    reservation: ReservationId,
) -> Result<Reply, ApiError> {
    let config = config::get().await?;
    let now = now();
    let pass = pass(config, request, now)?;
    let (_, view) = owned_reservation(config, &pass, reservation).await?;
    Ok(json(StatusCode::OK, &ReservationReply::new(view, now)))
}

/// Lets a hold go: its holder's pass, or for a waitlist offer the fan's queue ticket (the
/// fan declines the seat, and the next round offers it to the next fan).
async fn cancel_reservation(
    request: &Request,
    reservation: ReservationId,
) -> Result<Reply, ApiError> {
    let (config, cache) = connect().await?;
    let now = now();
    let holder = config
        .pass_key
        .verify_any_kind(bearer_token(request)?, now)?;
    let (db, view) = owned_reservation(config, &holder, reservation).await?;
    // Only a ticket needs the hold to be an offer: a pass costs no read.
    let is_offer =
        holder.kind != TokenKind::Pass && store::is_waitlist_offer(&db, reservation).await?;
    hold_admission(holder.kind, reservation, is_offer)?;
    view.reservation.cancel(now)?;
    if !store::release(&db, &view.reservation, now).await? {
        // Paid, lapsed or cancelled between the read and the write: report its state now.
        let current = store::reservation(&db, reservation)
            .await?
            .ok_or_else(|| ApiError::not_found("reservation", reservation))?;
        current.reservation.cancel(now)?;
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            format!("reservation {reservation} changed meanwhile; read it again"),
        ));
    }
    if let Some(schedule) = store::schedule(&db, view.reservation.schedule_id).await? {
        invalidate(&cache, schedule).await;
    }
    let mut view = view;
    view.reservation.status = ReservationStatus::Cancelled;
    Ok(json(StatusCode::OK, &ReservationReply::new(view, now)))
}
