//! The waiting room in Redis: one Lua script (`waiting_room.lua`, in `waiting-room-script`) owns every queue key and
//! runs each operation atomically, so a join or a status poll is one round trip (`EVALSHA`)
//! however many users race. The script mirrors the core's admission rules; this module only
//! names the keys, passes arguments and reads replies back into core types.
//!
//! Shared by the queue component (join, status, admin), the seats component (is a pass still
//! active) and the payment component (consume a pass once its payment completed).

use std::time::Duration;

use redis_kit::KeptConnection;
use spin_sdk::redis::{self, RedisParameter, RedisResult};
use ticketing_core::ApiError;
use ticketing_core::draw::{Commitment, DrawSeed, PublishedDraw};
use ticketing_core::ids::{ConcertId, QueueId, UserId};
use ticketing_core::limits::RateLimited;
use ticketing_core::pass::{Claims, PassError};
use ticketing_core::queue::{
    AdmissionPace, AdmissionPolicy, AdmissionShare, ExpiryReason, Position, QueueError,
    QueueSettings,
};
use ticketing_core::sale::{Opening, OpeningError, SOLD_CONCERTS_KEY, Stock, selling_queues_key};
use ticketing_core::time::Timestamp;
pub use waiting_room_script::{AbuseLimits, Caller};
use waiting_room_script::{QueueKeys, SCRIPT, ScriptCall, script_sha};

/// A user's place after joining.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Joined {
    pub position: Position,
    pub joined_at: Timestamp,
    /// False when the user already held this live place.
    pub is_new: bool,
}

/// A draw entry, taken before a scheduled queue opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entered {
    /// The entry's number, in entry order.
    pub entry: Position,
    pub joined_at: Timestamp,
    pub opening: Opening,
    pub commitment: Commitment,
    /// False when the user had entered already.
    pub is_new: bool,
}

/// What a join gave the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Joining {
    /// A place in line.
    Placed(Joined),
    /// An entry in the draw of a queue that has not opened.
    Entered(Entered),
}

/// A scheduled queue's draw as an entrant's poll finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gathered {
    pub opening: Opening,
    pub entrants: u64,
    pub commitment: Commitment,
}

/// Where a draw entry stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryStatus {
    /// Before the opening.
    Gathering(Gathered),
    /// From the opening until the draw placed the entrant.
    Drawing(Gathered),
    /// The draw placed the entrant at `position`, which the poll found as `place`.
    Placed { position: Position, place: Place },
}

/// Where a place stands after a status poll (which may also have run an admission round).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Waiting {
        /// Places between the line's front and this one (`Position::ahead_of_front`).
        ahead: u64,
        policy: AdmissionPolicy,
        /// Everyone in line, this user included.
        waiting: u64,
        /// The pace the queue has kept (`core::queue::AdmissionPace`), for the estimate.
        pace: AdmissionPace,
        /// The concert the queue sells has no seat open to a hold (`core::sale::Stock`).
        sold_out: bool,
    },
    Active {
        admitted_at: Timestamp,
        expires_at: Timestamp,
    },
    Ended(ExpiryReason),
}

/// A queue's settings and counts, for operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueOverview {
    pub settings: QueueSettings,
    /// Places ever handed out (the last position).
    pub joined: u64,
    pub waiting: u64,
    pub active: u64,
    /// The share of the rate admitted now, per mille (`core::queue::AdmissionShare`).
    pub share_permille: u64,
    /// Places admitted and places abandoned since the queue was created.
    pub admitted_total: u64,
    pub abandoned_total: u64,
    /// A scheduled queue's opening, commitment, entrants and how many the draw placed.
    pub draw: Option<DrawOverview>,
    /// The concert the queue sells, and its seats open to a hold at the bridge's last
    /// count (`None` until counted).
    pub selling: Option<Selling>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selling {
    pub concert: ConcertId,
    pub holdable: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrawOverview {
    pub opening: Opening,
    pub commitment: Commitment,
    pub entrants: u64,
    pub drawn: u64,
}

/// The line's front as every fan of a queue sees it; a ticket's holder at `position` has at
/// most `position - first_waiting` fans ahead (`Position::ahead_of_front`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueHead {
    /// The line's front: the first place admission has not passed (the next to be handed
    /// out when none waits).
    pub first_waiting: u64,
    /// The last position handed out.
    pub last_joined: u64,
    pub waiting: u64,
    pub open: bool,
    /// The operator's admission rate, fans a second.
    pub rate_per_sec: u64,
}

/// The outcome of consuming a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consumed {
    /// The slot is free now (or was already freed by an earlier call).
    Done,
    /// The pass had expired or its place ended otherwise; nothing to free.
    NotActive,
}

/// A flat script reply: an outcome name, then integers or strings.
struct Reply(Vec<RedisResult>);

impl Reply {
    fn outcome(&self) -> &str {
        self.text(0).unwrap_or("")
    }

    fn text(&self, index: usize) -> Option<&str> {
        match self.0.get(index)? {
            RedisResult::Binary(bytes) => std::str::from_utf8(bytes).ok(),
            RedisResult::Status(text) => Some(text),
            _ => None,
        }
    }

    fn int(&self, index: usize) -> Result<u64, ApiError> {
        match self.0.get(index) {
            Some(RedisResult::Int64(n)) if *n >= 0 => Ok(n.unsigned_abs()),
            _ => Err(self.unexpected()),
        }
    }

    /// An integer the script answers as -1 for none.
    fn optional_int(&self, index: usize) -> Result<Option<u64>, ApiError> {
        match self.0.get(index) {
            Some(RedisResult::Int64(-1)) => Ok(None),
            _ => self.int(index).map(Some),
        }
    }

    fn millis(&self, index: usize) -> Result<Timestamp, ApiError> {
        self.int(index).map(Timestamp::from_unix_millis)
    }

    fn commitment(&self, index: usize) -> Result<Commitment, ApiError> {
        self.text(index)
            .and_then(|text| Commitment::parse_hex(text).ok())
            .ok_or_else(|| self.unexpected())
    }

    /// A draw's seed: `None` where the script answers an empty string (not revealed).
    fn seed(&self, index: usize) -> Result<Option<DrawSeed>, ApiError> {
        match self.text(index) {
            Some("") => Ok(None),
            Some(text) => DrawSeed::parse_hex(text)
                .map(Some)
                .map_err(|_| self.unexpected()),
            None => Err(self.unexpected()),
        }
    }

    /// The whole reply as user ids (the entrant list, the users of drawn places).
    fn users(&self) -> Result<Vec<UserId>, ApiError> {
        (0..self.0.len())
            .map(|index| {
                self.text(index)
                    .and_then(|text| UserId::parse(text).ok())
                    .ok_or_else(|| self.unexpected())
            })
            .collect()
    }

    /// Opening, entrant count and commitment from `first` on.
    fn gathered(&self, first: usize) -> Result<Gathered, ApiError> {
        Ok(Gathered {
            opening: Opening::at(self.millis(first)?),
            entrants: self.int(first + 1)?,
            commitment: self.commitment(first + 2)?,
        })
    }

    fn position(&self, index: usize) -> Result<Position, ApiError> {
        Position::new(self.int(index)?).ok_or_else(|| self.unexpected())
    }

    fn policy(&self, first: usize) -> Result<AdmissionPolicy, ApiError> {
        let rate = self.int(first)?;
        let max_active = self.int(first + 1)?;
        AdmissionPolicy::new(
            u32::try_from(rate).map_err(|_| self.unexpected())?,
            u32::try_from(max_active).map_err(|_| self.unexpected())?,
            Duration::from_millis(self.int(first + 2)?),
            Duration::from_millis(self.int(first + 3)?),
        )
        .map_err(|_| self.unexpected())
    }

    /// Outcomes every operation may answer with.
    fn common_error(&self, queue: &QueueId) -> ApiError {
        match self.outcome() {
            "LIMITED" => match self.int(1) {
                Ok(wait_ms) => RateLimited::after_millis(wait_ms).into(),
                Err(error) => error,
            },
            "UNKNOWN_QUEUE" => QueueError::UnknownQueue(queue.clone()).into(),
            "PLACE_GONE" => QueueError::PlaceGone(queue.clone()).into(),
            "CLOSED" => QueueError::Closed(queue.clone()).into(),
            _ => self.unexpected(),
        }
    }

    /// A reply the script never gives: a deployment mismatch, which retrying will not fix.
    fn unexpected(&self) -> ApiError {
        ApiError::internal(format!(
            "waiting room: unexpected script reply {:?}",
            self.0
        ))
    }
}

/// A status poll by the holder of `token` (a ticket or a draw entry), counted against the
/// status limits of its user and address.
fn limited_poll(
    call: ScriptCall,
    token: &Claims,
    address: Option<&str>,
    limits: &AbuseLimits,
) -> ScriptCall {
    let caller = Caller {
        user_id: token.user_id,
        address,
    };
    call.limited(&token.queue_id, "status", &caller, limits)
}

/// Entrants read, or placed, per script call of a draw: a call stays short, so Redis is
/// not held up for long by any one of them.
const DRAW_CHUNK: usize = 1_000;

/// The set of queue ids operators configured: the console lists queues from it.
const REGISTRY: &str = "waiting-rooms";

/// The registry and `queue`, as the arguments of `SADD` and `SREM`.
fn registry_member(queue: &QueueId) -> Vec<RedisParameter> {
    [REGISTRY, queue.as_str()]
        .map(|value| RedisParameter::Binary(value.as_bytes().to_vec()))
        .to_vec()
}

/// A connection to the Redis that holds the queues, kept across the instance's requests.
pub struct WaitingRoom {
    connection: KeptConnection,
}

impl std::fmt::Debug for WaitingRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WaitingRoom")
    }
}

/// A script operation on `pass`'s place: its position and user, which the script checks.
fn pass_call(pass: &Claims, op: &'static str, now: Timestamp) -> ScriptCall {
    ScriptCall::new(&pass.queue_id, op, now)
        .arg(pass.position.get())
        .arg(pass.user_id)
}

impl WaitingRoom {
    pub async fn connect(address: &str) -> Result<Self, ApiError> {
        let connection = KeptConnection::open(address)
            .await
            .map_err(|error| redis_failure(&error))?;
        Ok(Self { connection })
    }

    async fn execute(
        &self,
        command: &str,
        arguments: Vec<RedisParameter>,
    ) -> Result<Vec<RedisResult>, ApiError> {
        self.connection
            .execute(command, arguments)
            .await
            .map_err(|error| redis_failure(&error))
    }

    /// Gives `caller` a place in `queue`, or their live place back; before a scheduled
    /// queue opens, an entry in its draw. The default queue is created with
    /// `default_policy` on its first join; other queues must be configured first.
    pub async fn join(
        &self,
        queue: &QueueId,
        caller: &Caller<'_>,
        limits: &AbuseLimits,
        default_policy: &AdmissionPolicy,
        now: Timestamp,
    ) -> Result<Joining, ApiError> {
        let call = ScriptCall::join(queue, caller, limits, default_policy, now);
        let reply = self.run(call).await?;
        let (entered, is_new) = match reply.outcome() {
            "JOINED" => (false, true),
            "EXISTING" => (false, false),
            "ENTERED" => (true, true),
            "ENTRANT" => (true, false),
            _ => return Err(reply.common_error(queue)),
        };
        if entered {
            return Ok(Joining::Entered(Entered {
                entry: reply.position(1)?,
                joined_at: reply.millis(2)?,
                opening: Opening::at(reply.millis(3)?),
                commitment: reply.commitment(4)?,
                is_new,
            }));
        }
        Ok(Joining::Placed(Joined {
            position: reply.position(1)?,
            joined_at: reply.millis(2)?,
            is_new,
        }))
    }

    /// The place a queue ticket stands for, after one admission round. Counts as the
    /// holder's sign of life.
    pub async fn status(
        &self,
        ticket: &Claims,
        address: Option<&str>,
        limits: &AbuseLimits,
        now: Timestamp,
    ) -> Result<Place, ApiError> {
        let call = ScriptCall::new(&ticket.queue_id, "status", now)
            .arg(ticket.position.get())
            .arg(ticket.user_id);
        let reply = self
            .run(limited_poll(call, ticket, address, limits))
            .await?;
        Self::read_place(&ticket.queue_id, ticket.position, &reply, now)
    }

    fn read_place(
        queue: &QueueId,
        position: Position,
        reply: &Reply,
        now: Timestamp,
    ) -> Result<Place, ApiError> {
        match reply.outcome() {
            "WAITING" => Ok(Place::Waiting {
                ahead: position.ahead_of_front(reply.position(1)?),
                policy: reply.policy(2)?,
                waiting: reply.int(6)?,
                pace: AdmissionPace::from_parts(reply.int(7)?, now),
                sold_out: reply.int(8)? == 1,
            }),
            "ACTIVE" => Ok(Place::Active {
                admitted_at: reply.millis(1)?,
                expires_at: reply.millis(2)?,
            }),
            "ENDED" => match reply.text(1) {
                Some("ABANDONED") => Ok(Place::Ended(ExpiryReason::Abandoned)),
                Some("PASS_EXPIRED") => Ok(Place::Ended(ExpiryReason::PassExpired)),
                Some("CONSUMED") => Ok(Place::Ended(ExpiryReason::Consumed)),
                _ => Err(reply.unexpected()),
            },
            _ => Err(reply.common_error(queue)),
        }
    }

    /// Where a draw entry stands; once the draw placed its holder, a status poll of the
    /// place (sign of life and admission round included).
    pub async fn entry_status(
        &self,
        entry: &Claims,
        address: Option<&str>,
        limits: &AbuseLimits,
        now: Timestamp,
    ) -> Result<EntryStatus, ApiError> {
        let queue = &entry.queue_id;
        let call = ScriptCall::new(queue, "entry", now).arg(entry.user_id);
        let mut reply = self.run(limited_poll(call, entry, address, limits)).await?;
        match reply.outcome() {
            "GATHERING" => Ok(EntryStatus::Gathering(reply.gathered(1)?)),
            "DRAWING" => Ok(EntryStatus::Drawing(reply.gathered(1)?)),
            "PLACED" => {
                let position = reply.position(1)?;
                let status = Reply(reply.0.split_off(2));
                let place = Self::read_place(queue, position, &status, now)?;
                Ok(EntryStatus::Placed { position, place })
            }
            _ => Err(reply.common_error(queue)),
        }
    }

    /// Runs the draw of a scheduled queue that opened: reads its entrants, orders them by
    /// the seed (`ticketing_core::draw`) and places them in chunks. One caller at a time
    /// holds the draw's lease; another returns at once (the entrants poll again shortly).
    /// A draw interrupted halfway is finished by the next caller: the order is the same
    /// every time, and the script places each chunk only where the last one ended.
    pub async fn run_draw(&self, queue: &QueueId, now: Timestamp) -> Result<(), ApiError> {
        const LEASE_MS: u64 = 10_000;
        let plan = self
            .run(ScriptCall::new(queue, "draw_plan", now).arg(LEASE_MS))
            .await?;
        match plan.outcome() {
            "PLAN" => {}
            "DONE" | "BUSY" | "NOT_YET" | "UNSCHEDULED" => return Ok(()),
            _ => return Err(plan.common_error(queue)),
        }
        let entrants = plan.int(1)?;
        let seed = plan.seed(3)?.ok_or_else(|| plan.unexpected())?;
        let mut listed = Vec::with_capacity(entrants as usize);
        while (listed.len() as u64) < entrants {
            let chunk = self
                .run(
                    ScriptCall::new(queue, "entrants", now)
                        .arg(listed.len())
                        .arg(DRAW_CHUNK),
                )
                .await?;
            if chunk.0.is_empty() {
                return Err(chunk.unexpected());
            }
            listed.extend(chunk.users()?);
        }
        let order = seed.order(&listed);
        let mut drawn = plan.int(2)? as usize;
        while drawn < order.len() {
            let mut call = ScriptCall::new(queue, "draw", now).arg(drawn);
            for user in &order[drawn..(drawn + DRAW_CHUNK).min(order.len())] {
                call = call.arg(user);
            }
            let reply = self.run(call).await?;
            if reply.outcome() != "DRAWN" {
                return Err(reply.common_error(queue));
            }
            drawn = reply.int(1)? as usize;
        }
        Ok(())
    }

    /// A scheduled queue's draw as the public sees it: the commitment, and once the draw
    /// placed everyone the seed and the entrants in their drawn places.
    pub async fn published_draw(
        &self,
        queue: &QueueId,
        now: Timestamp,
    ) -> Result<PublishedDraw, ApiError> {
        let info = self.run(ScriptCall::new(queue, "draw_info", now)).await?;
        match info.outcome() {
            "DRAW" => {}
            "UNSCHEDULED" => return Err(OpeningError::NotScheduled(queue.clone()).into()),
            _ => return Err(info.common_error(queue)),
        }
        let commitment = info.commitment(2)?;
        let seed = info.seed(5)?;
        let mut order = Vec::new();
        if seed.is_some() {
            let drawn = info.int(4)?;
            let mut first = 1;
            while first <= drawn {
                let count = (DRAW_CHUNK as u64).min(drawn - first + 1);
                let chunk = self
                    .run(
                        ScriptCall::new(queue, "drawn_order", now)
                            .arg(first)
                            .arg(count),
                    )
                    .await?;
                order.extend(chunk.users()?);
                first += count;
            }
        }
        Ok(PublishedDraw {
            queue_id: queue.clone(),
            commitment,
            seed,
            order,
        })
    }

    /// Ends a pass whose payment completed, freeing its slot for the next in line. Safe to
    /// repeat.
    pub async fn consume(&self, pass: &Claims, now: Timestamp) -> Result<Consumed, ApiError> {
        let reply = self.run(pass_call(pass, "consume", now)).await?;
        match reply.outcome() {
            "CONSUMED" => Ok(Consumed::Done),
            "NOT_ACTIVE" => Ok(Consumed::NotActive),
            _ => Err(reply.common_error(&pass.queue_id)),
        }
    }

    /// Tells the pass's queue that its fan holds a seat now: the seat store counts that seat
    /// taken from here on, so the pass no longer speaks for one (`core::sale::Stock::counted`).
    /// A pass no longer active changes nothing.
    pub async fn held(&self, pass: &Claims, now: Timestamp) -> Result<(), ApiError> {
        let reply = self.run(pass_call(pass, "held", now)).await?;
        match reply.outcome() {
            "HELD" | "NOT_ACTIVE" => Ok(()),
            _ => Err(reply.common_error(&pass.queue_id)),
        }
    }

    /// Checks that a pass (already verified by signature and expiry) still counts in its
    /// queue: a consumed pass may not reserve or pay again.
    pub async fn ensure_pass_active(&self, pass: &Claims, now: Timestamp) -> Result<(), ApiError> {
        let reply = self.run(pass_call(pass, "check", now)).await?;
        match reply.outcome() {
            "ACTIVE" => Ok(()),
            "NOT_ACTIVE" => Err(PassError::NoLongerActive.into()),
            _ => Err(reply.common_error(&pass.queue_id)),
        }
    }

    /// The front of `queue`'s line: one read, no admission round and no sign of life,
    /// so it can be cached and served to any number of pollers.
    pub async fn head(&self, queue: &QueueId, now: Timestamp) -> Result<QueueHead, ApiError> {
        let reply = self.run(ScriptCall::new(queue, "head", now)).await?;
        if reply.outcome() != "HEAD" {
            return Err(reply.common_error(queue));
        }
        Ok(QueueHead {
            first_waiting: reply.int(1)?,
            last_joined: reply.int(2)?,
            waiting: reply.int(3)?,
            open: reply.int(4)? == 1,
            rate_per_sec: reply.int(5)?,
        })
    }

    /// Reports that the seat and payment path behind `queue` is saturated: its admission
    /// share halves (at most once a second). Answers the share now, per mille.
    pub async fn report_strain(&self, queue: &QueueId, now: Timestamp) -> Result<u64, ApiError> {
        let reply = self.run(ScriptCall::new(queue, "strain", now)).await?;
        if reply.outcome() != "STRAINED" {
            return Err(reply.common_error(queue));
        }
        reply.int(1)
    }

    pub async fn overview(
        &self,
        queue: &QueueId,
        now: Timestamp,
    ) -> Result<QueueOverview, ApiError> {
        let reply = self.run(ScriptCall::new(queue, "settings", now)).await?;
        Self::read_overview(queue, &reply)
    }

    /// Creates `queue` with `settings`, or changes a running one. The queue is listed in
    /// the registry first, so a queue that exists is always listed (a listed queue whose
    /// creation failed, or whose data expired, is skipped by `configured_queues`).
    /// `scheduled` creates a queue that gathers entrants until its opening, with the
    /// draw's seed (kept secret until then).
    pub async fn configure(
        &self,
        queue: &QueueId,
        settings: &QueueSettings,
        scheduled: Option<(Opening, &DrawSeed)>,
        now: Timestamp,
    ) -> Result<QueueOverview, ApiError> {
        self.execute("SADD", registry_member(queue)).await?;
        let policy = settings.policy;
        let mut call = ScriptCall::new(queue, "configure", now)
            .arg(u8::from(settings.open))
            .arg(policy.rate_per_sec())
            .arg(policy.max_active())
            .arg(policy.pass_ttl().as_millis())
            .arg(policy.idle_timeout().as_millis());
        if let Some((opening, seed)) = scheduled {
            call = call
                .arg(opening.opens_at().unix_millis())
                .arg(seed.commitment())
                .arg(seed);
        }
        let reply = self.run(call).await?;
        if reply.outcome() == "EXISTS" {
            return Err(OpeningError::AlreadyCreated.into());
        }
        Self::read_overview(queue, &reply)
    }

    /// Makes `queue` sell `concert`: while the concert has no seat open to a hold its
    /// waiting fans are told it is sold out and nobody is admitted, until a seat comes back.
    /// The bridge counts every concert in `SOLD_CONCERTS_KEY` and hands the count to the
    /// queues in its `selling_queues_key`, so the queue joins those sets first; the bridge
    /// drops members that no longer sell the concert.
    pub async fn sell(
        &self,
        queue: &QueueId,
        concert: ConcertId,
        now: Timestamp,
    ) -> Result<QueueOverview, ApiError> {
        let text = |value: &str| RedisParameter::Binary(value.as_bytes().to_vec());
        let concert_text = concert.to_string();
        self.execute("SADD", vec![text(SOLD_CONCERTS_KEY), text(&concert_text)])
            .await?;
        self.execute(
            "SADD",
            vec![text(&selling_queues_key(concert)), text(queue.as_str())],
        )
        .await?;
        let reply = self
            .run(ScriptCall::new(queue, "sell", now).arg(concert_text))
            .await?;
        Self::read_overview(queue, &reply)
    }

    /// What `queue` sells and what it counts open of it now (the bridge's last count, less
    /// the fans let in who have not held a seat yet): one read of its meta hash. `None`: it
    /// sells nothing; a count not taken yet is no stock known, so not sold out.
    pub async fn sale(&self, queue: &QueueId) -> Result<Option<(ConcertId, Stock)>, ApiError> {
        let text = |value: &str| RedisParameter::Binary(value.as_bytes().to_vec());
        let reply = self
            .execute(
                "HMGET",
                vec![
                    text(&QueueKeys::new(queue).meta()),
                    text("concert"),
                    text("holdable"),
                ],
            )
            .await?;
        let field = |index: usize| match reply.get(index) {
            Some(RedisResult::Binary(bytes)) => std::str::from_utf8(bytes).ok().map(str::to_owned),
            _ => None,
        };
        let Some(concert) = field(0).and_then(|c| ConcertId::parse(&c).ok()) else {
            return Ok(None);
        };
        let holdable = field(1).and_then(|n| n.parse().ok()).unwrap_or(u64::MAX);
        Ok(Some((concert, Stock { holdable })))
    }

    /// Takes a queue whose data expired (or never came to be) off the registry.
    pub async fn forget_queue(&self, queue: &QueueId) -> Result<(), ApiError> {
        self.execute("SREM", registry_member(queue)).await.map(drop)
    }

    /// Every queue an operator configured, and the default queue (created by a join), by id.
    pub async fn configured_queues(&self) -> Result<Vec<QueueId>, ApiError> {
        let members = self
            .execute(
                "SMEMBERS",
                vec![RedisParameter::Binary(REGISTRY.as_bytes().to_vec())],
            )
            .await?;
        let mut queues: Vec<QueueId> = members
            .iter()
            .filter_map(|member| match member {
                RedisResult::Binary(bytes) => QueueId::parse(std::str::from_utf8(bytes).ok()?).ok(),
                _ => None,
            })
            .collect();
        queues.push(QueueId::default());
        queues.sort();
        queues.dedup();
        Ok(queues)
    }

    fn read_overview(queue: &QueueId, reply: &Reply) -> Result<QueueOverview, ApiError> {
        if reply.outcome() != "QUEUE" {
            return Err(reply.common_error(queue));
        }
        Ok(QueueOverview {
            settings: QueueSettings {
                open: reply.int(1)? == 1,
                policy: reply.policy(2)?,
            },
            joined: reply.int(6)?,
            waiting: reply.int(7)?,
            active: reply.int(8)?,
            share_permille: reply.int(9)?,
            admitted_total: reply.int(10)?,
            abandoned_total: reply.int(11)?,
            draw: match reply.int(12)? {
                0 => None,
                opens_at => Some(DrawOverview {
                    opening: Opening::at(Timestamp::from_unix_millis(opens_at)),
                    commitment: reply.commitment(15)?,
                    entrants: reply.int(13)?,
                    drawn: reply.int(14)?,
                }),
            },
            selling: match reply.text(16) {
                Some("") => None,
                Some(concert) => Some(Selling {
                    concert: ConcertId::parse(concert).map_err(|_| reply.unexpected())?,
                    holdable: reply.optional_int(17)?,
                }),
                None => return Err(reply.unexpected()),
            },
        })
    }

    /// `EVALSHA`, falling back to `EVAL` (which caches the script) when Redis does not know
    /// the script yet, e.g. after a restart.
    async fn run(&self, call: ScriptCall) -> Result<Reply, ApiError> {
        let parameters = |script: &str| {
            let mut parameters = Vec::with_capacity(2 + call.keys.len() + call.args.len());
            parameters.push(RedisParameter::Binary(script.as_bytes().to_vec()));
            parameters.push(RedisParameter::Int64(call.keys.len() as i64));
            parameters.extend(
                call.keys
                    .iter()
                    .chain(&call.args)
                    .map(|value| RedisParameter::Binary(value.as_bytes().to_vec())),
            );
            parameters
        };
        let result = self
            .connection
            .execute("EVALSHA", parameters(script_sha()))
            .await;
        let result = match result {
            // Redis says NOSCRIPT; clients spell it in their own case ("NoScript: …").
            Err(redis::Error::Other(message))
                if message.to_ascii_lowercase().contains("noscript") =>
            {
                self.connection.execute("EVAL", parameters(SCRIPT)).await
            }
            other => other,
        };
        result.map(Reply).map_err(|error| redis_failure(&error))
    }
}

/// Awaits `connecting` (the database connection of a request made with `pass`) and, when
/// the wait or a failure shows the seat and payment path saturated
/// (`AdmissionShare::shows_strain`), reports strain to the pass's queue, so it admits fewer
/// fans until the path recovers. The report is best effort: the request's own outcome
/// stands.
pub async fn connect_watching_strain<T, E>(
    redis_url: &str,
    pass: &Claims,
    connecting: impl Future<Output = Result<T, E>>,
    now: Timestamp,
) -> Result<T, E> {
    let queue = &pass.queue_id;
    let started = std::time::Instant::now();
    let connected = connecting.await;
    if AdmissionShare::shows_strain(started.elapsed(), connected.is_err()) {
        let reported = match WaitingRoom::connect(redis_url).await {
            Ok(room) => room.report_strain(queue, now).await.map(drop),
            Err(error) => Err(error),
        };
        if let Err(error) = reported {
            eprintln!("waiting room: reporting strain for queue {queue}: {error}");
        }
    }
    connected
}

fn redis_failure(error: &redis::Error) -> ApiError {
    eprintln!("waiting room: redis failed: {error:?}");
    ApiError::unavailable("redis")
}
