//! The waiting room's Redis script (`waiting_room.lua`) and how to call it: the keys of a
//! queue, all under one hash tag, and the arguments of each operation. No I/O: the Spin
//! components run the calls through `functions/waiting-room`, the native benchmark server
//! and the tests through redis-rs, so every caller sends the script the very same call.

use std::sync::OnceLock;

use ticketing_core::ids::{QueueId, UserId};
use ticketing_core::limits::RateLimit;
use ticketing_core::queue::AdmissionPolicy;
use ticketing_core::time::Timestamp;

/// The script; it mirrors the core's admission rules (see its header).
pub const SCRIPT: &str = include_str!("waiting_room.lua");

/// The script's SHA-1, as Redis names cached scripts (`EVALSHA`).
pub fn script_sha() -> &'static str {
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

/// Places per place hash: Redis keeps a hash of at most 128 short fields in its compact
/// encoding (`hash-max-listpack-entries`), about 50 bytes a place.
pub const PLACES_PER_KEY: u64 = 128;

/// Redis keys of one queue, all under the hash tag `{q:ID}` (one Redis Cluster slot).
#[derive(Clone, Debug)]
pub struct QueueKeys(String);

impl QueueKeys {
    pub fn new(queue: &QueueId) -> Self {
        Self(format!("{{q:{queue}}}"))
    }

    /// The keys of the queue whose meta hash is `meta_key` (as a scan for `{q:*}:meta`
    /// finds it); `None` for a key no queue has.
    pub fn of_meta_key(meta_key: &str) -> Option<Self> {
        let id = meta_key.strip_prefix("{q:")?.strip_suffix("}:meta")?;
        QueueId::parse(id).ok().map(|queue| Self::new(&queue))
    }

    /// The keys the script is given: meta, the prefixes of the user and place hashes (the
    /// script names each hash from them), passes.
    fn data(&self) -> [String; 4] {
        ["meta", "u:", "p:", "passes"].map(|name| format!("{}:{name}", self.0))
    }

    /// The queue's meta hash: settings, counters, and the sale (`concert`, `holdable`).
    pub fn meta(&self) -> String {
        format!("{}:meta", self.0)
    }

    /// The list of a scheduled queue's entrants in entry order.
    pub fn entrants(&self) -> String {
        format!("{}:u:entrants", self.0)
    }

    /// The hash that holds `position`'s place.
    pub fn places_of(&self, position: u64) -> String {
        format!(
            "{}:p:{}",
            self.0,
            position.saturating_sub(1) / PLACES_PER_KEY
        )
    }

    /// Every hash that may hold a user's entry (the script picks one by the id's last three
    /// digits).
    pub fn all_users(&self) -> impl Iterator<Item = String> + '_ {
        (0..1000).map(|digits| format!("{}:u:{digits:03}", self.0))
    }

    /// The hash that counts `operation`'s requests of subjects in `bucket` during the
    /// fixed window `window` (the clock divided by the window's length).
    fn limit(&self, operation: &str, kind: &str, window: u64, bucket: u32) -> String {
        format!("{}:rl:{operation}:{kind}:{window}:{bucket:03}", self.0)
    }
}

/// Which of 1,000 counter hashes a client address is counted in: FNV-1a, stable across
/// builds and processes, so every app node counts an address in the same place.
fn address_bucket(address: &str) -> u32 {
    let hash = address.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    hash % 1000
}

/// The keys and arguments of one script call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptCall {
    pub keys: Vec<String>,
    pub args: Vec<String>,
    now: Timestamp,
}

impl ScriptCall {
    /// `operation` on `queue` at `now`: the queue's four data keys, then the operation and
    /// the clock as ARGV 1 and 2.
    pub fn new(queue: &QueueId, operation: &str, now: Timestamp) -> Self {
        Self {
            keys: QueueKeys::new(queue).data().into(),
            args: vec![operation.to_owned(), now.unix_millis().to_string()],
            now,
        }
    }

    pub fn arg(mut self, value: impl ToString) -> Self {
        self.args.push(value.to_string());
        self
    }

    /// Adds the rate-limit counters of `operation` for `caller` (keys 5 and 6) and, for the
    /// user then the address, the field counted, the limit and its window in milliseconds.
    /// A window is fixed and aligned to the clock, and its counters share hashes (1,000 per
    /// subject kind), so a fan's counter is a hash field of some 15 bytes, not a key of 90.
    pub fn limited(
        mut self,
        queue: &QueueId,
        operation: &str,
        caller: &Caller<'_>,
        limits: &AbuseLimits,
    ) -> Self {
        let keys = QueueKeys::new(queue);
        let user = caller.user_id.get();
        let address = caller.address.unwrap_or("unknown");
        let subjects = [
            ("u", user.to_string(), (user % 1000) as u32, limits.per_user),
            (
                "a",
                address.to_owned(),
                address_bucket(address),
                limits.per_address,
            ),
        ];
        for (kind, field, bucket, limit) in subjects {
            let window_ms = limit.window().as_millis().max(1) as u64;
            let window = self.now.unix_millis() / window_ms;
            self.keys.push(keys.limit(operation, kind, window, bucket));
            self = self.arg(field).arg(limit.max_requests()).arg(window_ms);
        }
        self
    }

    /// `caller` joins `queue`; the `default` queue is created with `default_policy` on its
    /// first join. The script answers `JOINED` or `EXISTING` with the position and the join
    /// time, or a refusal (`LIMITED`, `UNKNOWN_QUEUE`, `CLOSED`).
    pub fn join(
        queue: &QueueId,
        caller: &Caller<'_>,
        limits: &AbuseLimits,
        default_policy: &AdmissionPolicy,
        now: Timestamp,
    ) -> Self {
        let create = *queue == QueueId::default();
        Self::new(queue, "join", now)
            .arg(caller.user_id)
            .limited(queue, "join", caller, limits)
            .arg(u8::from(create))
            .arg(default_policy.rate_per_sec())
            .arg(default_policy.max_active())
            .arg(default_policy.pass_ttl().as_millis())
            .arg(default_policy.idle_timeout().as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_script_files_places_in_hashes_of_the_size_the_keys_here_assume() {
        assert!(SCRIPT.contains(&format!("local PLACES_PER_KEY = {PLACES_PER_KEY}\n")));
        let keys = QueueKeys::new(&QueueId::parse("sale").unwrap());
        assert_eq!(keys.places_of(1), "{q:sale}:p:0");
        assert_eq!(keys.places_of(PLACES_PER_KEY), "{q:sale}:p:0");
        assert_eq!(keys.places_of(PLACES_PER_KEY + 1), "{q:sale}:p:1");
        assert!(SCRIPT.contains("string.sub('00' .. user, -3)"));
        assert_eq!(keys.all_users().nth(7).unwrap(), "{q:sale}:u:007");
        assert!(SCRIPT.contains("return users .. 'entrants'"));
        assert_eq!(keys.entrants(), "{q:sale}:u:entrants");
        let found = QueueKeys::of_meta_key(&keys.data()[0]).unwrap();
        assert_eq!(found.places_of(1), "{q:sale}:p:0");
        assert!(QueueKeys::of_meta_key("{q:}:meta").is_none());
    }

    #[test]
    fn a_join_names_the_queues_keys_under_one_hash_tag_and_its_limits() {
        let queue = QueueId::parse("sale").unwrap();
        let caller = Caller {
            user_id: UserId::new(1_007).unwrap(),
            address: Some("10.0.0.1"),
        };
        let limit = RateLimit::new(10, Duration::from_secs(10)).unwrap();
        let limits = AbuseLimits {
            per_user: limit,
            per_address: limit,
        };
        let call = ScriptCall::join(
            &queue,
            &caller,
            &limits,
            &AdmissionPolicy::default(),
            Timestamp::from_unix_millis(25_000),
        );
        assert!(call.keys.iter().all(|key| key.starts_with("{q:sale}:")));
        // The third ten-second window; users counted by their id's last three digits.
        assert_eq!(call.keys[4], "{q:sale}:rl:join:u:2:007");
        let address_hash = format!("{{q:sale}}:rl:join:a:2:{:03}", address_bucket("10.0.0.1"));
        assert_eq!(call.keys[5], address_hash);
        assert_eq!(&call.args[..3], ["join", "25000", "1007"]);
        assert_eq!(
            &call.args[3..9],
            ["1007", "10", "10000", "10.0.0.1", "10", "10000"]
        );
        assert_eq!(
            call.args[9], "0",
            "only the default queue is created by a join"
        );
    }

    #[test]
    fn addresses_spread_over_the_thousand_counter_hashes() {
        let buckets: std::collections::HashSet<u32> = (0..=255)
            .map(|octet| address_bucket(&format!("203.0.113.{octet}")))
            .collect();
        assert!(buckets.len() > 200, "{} buckets", buckets.len());
        assert!(buckets.iter().all(|bucket| *bucket < 1000));
    }
}
