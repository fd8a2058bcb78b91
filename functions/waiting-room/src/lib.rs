//! The waiting room in Redis: one Lua script (`waiting_room.lua`) owns every queue key and
//! runs each operation atomically, so a join or a status poll is one round trip (`EVALSHA`)
//! however many users race. The script mirrors the core's admission rules; this module only
//! names the keys, passes arguments and reads replies back into core types.
//!
//! Shared by the queue component (join, status, admin), the seats component (is a pass still
//! active) and the payment component (consume a pass once its payment completed).

use std::sync::OnceLock;
use std::time::Duration;

use spin_sdk::redis::{self, RedisParameter, RedisResult};
use ticketing_core::ApiError;
use ticketing_core::ids::{QueueId, UserId};
use ticketing_core::limits::{RateLimit, RateLimited};
use ticketing_core::pass::{Claims, PassError};
use ticketing_core::queue::{AdmissionPolicy, ExpiryReason, Position, QueueError, QueueSettings};
use ticketing_core::time::Timestamp;

const SCRIPT: &str = include_str!("waiting_room.lua");

/// The script's SHA-1, as Redis names cached scripts.
fn script_sha() -> &'static str {
    static SHA: OnceLock<String> = OnceLock::new();
    SHA.get_or_init(|| sha1_smol::Sha1::from(SCRIPT).digest().to_string())
}

/// The limits on one operation: per user and per client address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbuseLimits {
    pub per_user: RateLimit,
    pub per_address: RateLimit,
}

/// Who is asking, for the abuse limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller<'a> {
    pub user_id: UserId,
    /// The client's IP address, when the host reports one.
    pub address: Option<&'a str>,
}

/// A user's place after joining.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Joined {
    pub position: Position,
    pub joined_at: Timestamp,
    /// False when the user already held this live place.
    pub is_new: bool,
}

/// Where a place stands after a status poll (which also ran an admission round).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Waiting {
        ahead: u64,
        policy: AdmissionPolicy,
        /// Everyone in line, this user included.
        waiting: u64,
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
}

/// The outcome of consuming a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consumed {
    /// The slot is free now (or was already freed by an earlier call).
    Done,
    /// The pass had expired or its place ended otherwise; nothing to free.
    NotActive,
}

/// Redis keys of one queue, all under the hash tag `{q:ID}`.
struct QueueKeys(String);

impl QueueKeys {
    fn new(queue: &QueueId) -> Self {
        Self(format!("{{q:{queue}}}"))
    }

    fn data(&self) -> [String; 5] {
        ["meta", "users", "line", "places", "passes"].map(|name| format!("{}:{name}", self.0))
    }

    fn limit(&self, operation: &str, subject: &str) -> String {
        format!("{}:rl:{operation}:{subject}", self.0)
    }
}

/// The arguments of one script call.
struct ScriptCall {
    keys: Vec<String>,
    args: Vec<String>,
}

impl ScriptCall {
    fn new(queue: &QueueId, operation: &str, now: Timestamp) -> Self {
        Self {
            keys: QueueKeys::new(queue).data().into(),
            args: vec![operation.to_owned(), now.unix_millis().to_string()],
        }
    }

    fn arg(mut self, value: impl ToString) -> Self {
        self.args.push(value.to_string());
        self
    }

    /// Adds the rate-limit counters of `operation` for `caller` (keys 6 and 7) and their
    /// limits as arguments.
    fn limited(
        mut self,
        queue: &QueueId,
        operation: &str,
        caller: &Caller<'_>,
        limits: &AbuseLimits,
    ) -> Self {
        let keys = QueueKeys::new(queue);
        self.keys
            .push(keys.limit(operation, &format!("u:{}", caller.user_id)));
        self.keys.push(keys.limit(
            operation,
            &format!("a:{}", caller.address.unwrap_or("unknown")),
        ));
        for limit in [limits.per_user, limits.per_address] {
            self = self
                .arg(limit.max_requests())
                .arg(limit.window().as_millis());
        }
        self
    }
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

    fn millis(&self, index: usize) -> Result<Timestamp, ApiError> {
        self.int(index).map(Timestamp::from_unix_millis)
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

/// A connection to the Redis that holds the queues.
pub struct WaitingRoom {
    connection: redis::Connection,
}

impl std::fmt::Debug for WaitingRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WaitingRoom")
    }
}

impl WaitingRoom {
    pub async fn connect(address: &str) -> Result<Self, ApiError> {
        let connection = redis::Connection::open(address)
            .await
            .map_err(|error| redis_failure(&error))?;
        Ok(Self { connection })
    }

    /// Gives `caller` a place in `queue`, or their live place back. The default queue is
    /// created with `default_policy` on its first join; other queues must be configured first.
    pub async fn join(
        &self,
        queue: &QueueId,
        caller: &Caller<'_>,
        limits: &AbuseLimits,
        default_policy: &AdmissionPolicy,
        now: Timestamp,
    ) -> Result<Joined, ApiError> {
        let create = *queue == QueueId::default();
        let call = ScriptCall::new(queue, "join", now)
            .arg(caller.user_id)
            .limited(queue, "join", caller, limits)
            .arg(u8::from(create))
            .arg(default_policy.rate_per_sec())
            .arg(default_policy.max_active())
            .arg(default_policy.pass_ttl().as_millis())
            .arg(default_policy.idle_timeout().as_millis());
        let reply = self.run(call).await?;
        let is_new = match reply.outcome() {
            "JOINED" => true,
            "EXISTING" => false,
            _ => return Err(reply.common_error(queue)),
        };
        Ok(Joined {
            position: reply.position(1)?,
            joined_at: reply.millis(2)?,
            is_new,
        })
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
        let queue = &ticket.queue_id;
        let caller = Caller {
            user_id: ticket.user_id,
            address,
        };
        let call = ScriptCall::new(queue, "status", now)
            .arg(ticket.position.get())
            .arg(ticket.user_id)
            .limited(queue, "status", &caller, limits);
        let reply = self.run(call).await?;
        match reply.outcome() {
            "WAITING" => Ok(Place::Waiting {
                ahead: reply.int(1)?,
                policy: reply.policy(2)?,
                waiting: reply.int(6)?,
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

    /// Ends a pass whose payment completed, freeing its slot for the next in line. Safe to
    /// repeat.
    pub async fn consume(&self, pass: &Claims, now: Timestamp) -> Result<Consumed, ApiError> {
        let call = ScriptCall::new(&pass.queue_id, "consume", now)
            .arg(pass.position.get())
            .arg(pass.user_id);
        let reply = self.run(call).await?;
        match reply.outcome() {
            "CONSUMED" => Ok(Consumed::Done),
            "NOT_ACTIVE" => Ok(Consumed::NotActive),
            _ => Err(reply.common_error(&pass.queue_id)),
        }
    }

    /// Checks that a pass (already verified by signature and expiry) still counts in its
    /// queue: a consumed pass may not reserve or pay again.
    pub async fn ensure_pass_active(&self, pass: &Claims, now: Timestamp) -> Result<(), ApiError> {
        let call = ScriptCall::new(&pass.queue_id, "check", now)
            .arg(pass.position.get())
            .arg(pass.user_id);
        let reply = self.run(call).await?;
        match reply.outcome() {
            "ACTIVE" => Ok(()),
            "NOT_ACTIVE" => Err(PassError::NoLongerActive.into()),
            _ => Err(reply.common_error(&pass.queue_id)),
        }
    }

    pub async fn overview(
        &self,
        queue: &QueueId,
        now: Timestamp,
    ) -> Result<QueueOverview, ApiError> {
        let reply = self.run(ScriptCall::new(queue, "settings", now)).await?;
        Self::read_overview(queue, &reply)
    }

    /// Creates `queue` with `settings`, or changes a running one.
    pub async fn configure(
        &self,
        queue: &QueueId,
        settings: &QueueSettings,
        now: Timestamp,
    ) -> Result<QueueOverview, ApiError> {
        let policy = settings.policy;
        let call = ScriptCall::new(queue, "configure", now)
            .arg(u8::from(settings.open))
            .arg(policy.rate_per_sec())
            .arg(policy.max_active())
            .arg(policy.pass_ttl().as_millis())
            .arg(policy.idle_timeout().as_millis());
        let reply = self.run(call).await?;
        Self::read_overview(queue, &reply)
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

fn redis_failure(error: &redis::Error) -> ApiError {
    eprintln!("waiting room: redis failed: {error:?}");
    ApiError::unavailable("redis")
}
