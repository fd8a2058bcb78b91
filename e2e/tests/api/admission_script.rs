//! The waiting-room script against the core's rules: random sequences of joins, polls,
//! consumed passes and clock steps run both through `waiting_room.lua` on real Redis (with
//! a simulated clock, which the script takes as an argument) and through
//! `ticketing_core::queue::admission_round`; every reply and count must agree.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use redis::Value;
use ticketing_core::ids::{QueueId, UserId};
use ticketing_core::limits::RateLimit;
use ticketing_core::queue::{
    ADMISSION_TICK, AdmissionBucket, AdmissionPace, AdmissionPolicy, AdmissionShare, Position,
    Waiting, admission_round,
};
use ticketing_core::sale::Stock;
use ticketing_core::time::Timestamp;
use waiting_room_script::{AbuseLimits, Caller, QueueKeys, ScriptCall};

const T0: u64 = 1_800_000_000_000;

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    Join(u8),
    Poll(usize),
    Consume(usize),
    Check(usize),
    /// The seat or payment path reports strain for the queue.
    Strain,
    /// The bridge counts the queue's concert: this many seats open to a hold.
    Stock(u64),
    /// A pass's fan holds a seat.
    Hold(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        // The boundaries (one second of tokens, the idle timeout, the pass lifetime) exactly,
        // and anything in between.
        1 => prop_oneof![Just(1_000u64), Just(10_000), Just(30_000)].prop_map(Op::Advance),
        2 => (1u64..4_000).prop_map(Op::Advance),
        1 => (1u8..4).prop_map(Op::Join),
        4 => any::<usize>().prop_map(Op::Poll),
        2 => any::<usize>().prop_map(Op::Consume),
        1 => any::<usize>().prop_map(Op::Check),
        1 => Just(Op::Strain),
        1 => prop_oneof![Just(0u64), 1u64..6].prop_map(Op::Stock),
        1 => any::<usize>().prop_map(Op::Hold),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Waiting,
    Active { admitted_at: u64, expires_at: u64 },
    Ended(&'static str),
}

/// The core's view of one queue.
struct Model {
    policy: AdmissionPolicy,
    share: AdmissionShare,
    pace: AdmissionPace,
    /// No admission round before this instant (`ADMISSION_TICK` after the last).
    next_round_at: u64,
    /// Seats open to a hold at the last count of the queue's concert that no fan let in
    /// is still choosing, less the fans admitted since (`None` until counted).
    open_seats: Option<u64>,
    /// Positions whose fan has held a seat.
    held: HashSet<u64>,
    bucket: AdmissionBucket,
    line: Vec<Waiting>,
    /// The first place the admission rounds have not passed: moves only in a round, to the
    /// first place still waiting after it (or past the last place).
    front: u64,
    places: HashMap<u64, State>,
    joined: u64,
}

impl Model {
    /// A status poll's admission work: a round if the tick allows, else only the poller's
    /// own lapsed pass ends.
    fn poll(&mut self, now: u64, position: u64) {
        if now >= self.next_round_at {
            self.round(now);
            self.next_round_at = now + ADMISSION_TICK.as_millis() as u64;
        } else if let State::Active { expires_at, .. } = self.places[&position]
            && expires_at <= now
        {
            self.places.insert(position, State::Ended("PASS_EXPIRED"));
        }
    }

    /// Passes that lived out their TTL end.
    fn expire_passes(&mut self, now: u64) {
        for state in self.places.values_mut() {
            if let State::Active { expires_at, .. } = *state
                && expires_at <= now
            {
                *state = State::Ended("PASS_EXPIRED");
            }
        }
    }

    /// Live passes whose fan has not held a seat yet.
    fn choosing(&self) -> u64 {
        self.places
            .iter()
            .filter(|(position, state)| {
                matches!(state, State::Active { .. }) && !self.held.contains(position)
            })
            .count() as u64
    }

    fn round(&mut self, now: u64) {
        let now_ts = Timestamp::from_unix_millis(now);
        self.expire_passes(now);
        let live = self
            .places
            .values()
            .filter(|s| matches!(s, State::Active { .. }))
            .count() as u64;
        let round = admission_round(
            &self.policy,
            self.share,
            self.bucket,
            now_ts,
            live,
            self.open_seats,
            &self.line,
        );
        for position in &round.admit {
            self.places.insert(
                position.get(),
                State::Active {
                    admitted_at: now,
                    expires_at: now + self.policy.pass_ttl().as_millis() as u64,
                },
            );
        }
        for position in &round.abandon {
            self.places
                .insert(position.get(), State::Ended("ABANDONED"));
        }
        self.line
            .retain(|w| !round.admit.contains(&w.position) && !round.abandon.contains(&w.position));
        self.front = self
            .line
            .first()
            .map_or(self.joined + 1, |waiting| waiting.position.get());
        self.bucket = round.bucket;
        if let Some(open) = &mut self.open_seats {
            *open -= round.admit.len() as u64;
        }
        self.pace = self
            .pace
            .after(round.admit.len() as u64, round.held_back, now_ts);
    }
}

struct Queue {
    keys: Vec<String>,
    layout: QueueKeys,
    connection: redis::Connection,
}

impl Queue {
    fn call(&mut self, args: &[String]) -> Vec<Value> {
        let script = redis::Script::new(waiting_room_script::SCRIPT);
        let mut invocation = script.prepare_invoke();
        for key in &self.keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        match invocation
            .invoke::<Value>(&mut self.connection)
            .expect("script")
        {
            Value::Array(values) => values,
            other => panic!("unexpected reply {other:?}"),
        }
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(s) => s.clone(),
        other => panic!("not text: {other:?}"),
    }
}

fn int(value: &Value) -> u64 {
    match value {
        Value::Int(n) => *n as u64,
        other => panic!("not an integer: {other:?}"),
    }
}

fn args(items: &[&dyn ToString]) -> Vec<String> {
    items.iter().map(|i| i.to_string()).collect()
}

fn run(rate: u32, max_active: u32, ops: Vec<Op>) -> Result<(), TestCaseError> {
    static QUEUES: AtomicU64 = AtomicU64::new(0);
    let id = format!(
        "t-script-{}-{}",
        std::process::id(),
        QUEUES.fetch_add(1, Ordering::Relaxed)
    );
    let tag = format!("{{q:{id}}}");
    let layout = QueueKeys::new(&QueueId::parse(&id).expect("queue id"));
    let connection = redis::Client::open(e2e::redis_url())
        .expect("redis url")
        .get_connection()
        .expect("connecting to redis");
    let mut queue = Queue {
        keys: ["meta", "u:", "p:", "passes", "rl:u", "rl:a"]
            .iter()
            .map(|k| format!("{tag}:{k}"))
            .collect(),
        layout,
        connection,
    };
    let policy = AdmissionPolicy::new(
        rate,
        max_active,
        Duration::from_secs(30),
        Duration::from_secs(10),
    )
    .expect("policy");
    let mut now = T0;
    queue.call(&args(&[
        &"configure",
        &now,
        &1,
        &rate,
        &max_active,
        &30_000,
        &10_000,
    ]));
    let mut model = Model {
        policy,
        share: AdmissionShare::FULL,
        pace: AdmissionPace::unmeasured(&policy, Timestamp::from_unix_millis(now)),
        bucket: AdmissionBucket::empty(Timestamp::from_unix_millis(now)),
        line: Vec::new(),
        front: 1,
        places: HashMap::new(),
        joined: 0,
        next_round_at: 0,
        open_seats: None,
        held: HashSet::new(),
    };
    // The queue sells concert 7; its stock is unknown (not sold out) until counted.
    let sold = queue.call(&args(&[&"sell", &now, &7]));
    prop_assert_eq!(text(&sold[0]), "QUEUE");
    let mut counted_at = 0u64;
    // The user's and the address's counters, limits turned off.
    let no_limits = ["u", "0", "1000", "a", "0", "1000"];
    for op in ops {
        match op {
            Op::Advance(ms) => now += ms,
            Op::Join(count) => {
                for _ in 0..count {
                    if model.joined >= 40 {
                        break;
                    }
                    model.joined += 1;
                    let user = model.joined;
                    let mut a = args(&[&"join", &now, &user]);
                    a.extend(no_limits.map(String::from));
                    a.extend(args(&[&0, &1, &1, &30_000, &10_000]));
                    let reply = queue.call(&a);
                    prop_assert_eq!(text(&reply[0]), "JOINED");
                    prop_assert_eq!(int(&reply[1]), user);
                    model.line.push(Waiting {
                        position: Position::new(user).expect("position"),
                        last_seen: Timestamp::from_unix_millis(now),
                    });
                    model.places.insert(user, State::Waiting);
                }
            }
            Op::Poll(pick) if model.joined > 0 => {
                let position = pick as u64 % model.joined + 1;
                let mut a = args(&[&"status", &now, &position, &position]);
                a.extend(no_limits.map(String::from));
                let reply = queue.call(&a);
                // The poll is the holder's sign of life, unless it came too late.
                if let Some(index) = model.line.iter().position(|w| w.position.get() == position) {
                    let seen = model.line[index].last_seen;
                    if policy.is_abandoned(seen, Timestamp::from_unix_millis(now)) {
                        model.line.remove(index);
                        model.places.insert(position, State::Ended("ABANDONED"));
                    } else {
                        model.line[index].last_seen = Timestamp::from_unix_millis(now);
                    }
                }
                model.poll(now, position);
                let expected = model.places[&position];
                match text(&reply[0]).as_str() {
                    "WAITING" => {
                        prop_assert_eq!(expected, State::Waiting);
                        prop_assert_eq!(int(&reply[1]), model.front, "the line's front");
                        prop_assert_eq!(int(&reply[6]), model.line.len() as u64, "waiting");
                        prop_assert_eq!(int(&reply[7]), model.pace.milli_per_sec(), "pace");
                        let sold_out = model
                            .open_seats
                            .is_some_and(|holdable| Stock { holdable }.is_sold_out());
                        prop_assert_eq!(int(&reply[8]) == 1, sold_out, "sold out");
                    }
                    "ACTIVE" => prop_assert_eq!(
                        expected,
                        State::Active {
                            admitted_at: int(&reply[1]),
                            expires_at: int(&reply[2]),
                        }
                    ),
                    "ENDED" => {
                        let reason = text(&reply[1]);
                        prop_assert!(
                            matches!(expected, State::Ended(r) if r == reason),
                            "script says ENDED {reason}, core says {expected:?}"
                        );
                    }
                    other => prop_assert!(false, "unexpected outcome {other}"),
                }
            }
            Op::Consume(pick) if model.joined > 0 => {
                let position = pick as u64 % model.joined + 1;
                let reply = queue.call(&args(&[&"consume", &now, &position, &position]));
                let state = model.places[&position];
                let expected = match state {
                    State::Active { expires_at, .. } if now < expires_at => {
                        model.places.insert(position, State::Ended("CONSUMED"));
                        "CONSUMED"
                    }
                    State::Ended("CONSUMED") => "CONSUMED",
                    _ => "NOT_ACTIVE",
                };
                prop_assert_eq!(text(&reply[0]), expected);
            }
            Op::Check(pick) if model.joined > 0 => {
                let position = pick as u64 % model.joined + 1;
                let reply = queue.call(&args(&[&"check", &now, &position, &position]));
                let expected = match model.places[&position] {
                    State::Active { expires_at, .. } if now < expires_at => "ACTIVE",
                    _ => "NOT_ACTIVE",
                };
                prop_assert_eq!(text(&reply[0]), expected);
            }
            Op::Strain => {
                let reply = queue.call(&args(&[&"strain", &now]));
                let now_ts = Timestamp::from_unix_millis(now);
                model.share = model.share.strained(now_ts);
                prop_assert_eq!(text(&reply[0]), "STRAINED");
                prop_assert_eq!(int(&reply[1]), u64::from(model.share.at(now_ts)));
            }
            Op::Stock(open) => {
                counted_at += 1;
                let reply = queue.call(&args(&[&"stock", &now, &7, &open, &counted_at]));
                // Lapsed passes end first; each fan still choosing speaks for a seat.
                model.expire_passes(now);
                let holdable = Stock::counted(open, model.choosing()).holdable;
                prop_assert_eq!(text(&reply[0]), "STOCK");
                prop_assert_eq!(int(&reply[1]), holdable);
                // A count older than the one kept changes nothing.
                let stale = queue.call(&args(&[&"stock", &now, &7, &5, &0]));
                prop_assert_eq!(int(&stale[1]), holdable);
                let other = queue.call(&args(&[&"stock", &now, &8, &0, &(counted_at + 1)]));
                prop_assert_eq!(text(&other[0]), "NOT_SELLING");
                model.open_seats = Some(holdable);
            }
            Op::Hold(pick) if model.joined > 0 => {
                let position = pick as u64 % model.joined + 1;
                let reply = queue.call(&args(&[&"held", &now, &position, &position]));
                let expected = match model.places[&position] {
                    State::Active { expires_at, .. } if now < expires_at => {
                        model.held.insert(position);
                        "HELD"
                    }
                    _ => "NOT_ACTIVE",
                };
                prop_assert_eq!(text(&reply[0]), expected);
            }
            Op::Poll(_) | Op::Consume(_) | Op::Check(_) | Op::Hold(_) => {}
        }
        let overview = queue.call(&args(&[&"settings", &now]));
        prop_assert_eq!(int(&overview[6]), model.joined);
        prop_assert_eq!(int(&overview[7]), model.line.len() as u64, "waiting");
        let active = model
            .places
            .values()
            .filter(|s| matches!(s, State::Active { expires_at, .. } if *expires_at > now))
            .count() as u64;
        prop_assert_eq!(int(&overview[8]), active, "active");
        let share = model.share.at(Timestamp::from_unix_millis(now));
        prop_assert_eq!(int(&overview[9]), u64::from(share), "admission share");
        prop_assert_eq!(text(&overview[16]), "7", "the concert sold");
        // For operators: every admission, and every place whose fan stopped polling.
        let ever =
            |wanted: fn(&State) -> bool| model.places.values().filter(|s| wanted(s)).count() as u64;
        let admitted = ever(|s| {
            matches!(
                s,
                State::Active { .. } | State::Ended("PASS_EXPIRED" | "CONSUMED")
            )
        });
        prop_assert_eq!(int(&overview[10]), admitted, "admitted since creation");
        prop_assert_eq!(
            int(&overview[11]),
            ever(|s| *s == State::Ended("ABANDONED")),
            "abandoned"
        );
        // Only live places keep their user's entry: an ended one frees it.
        let mut users = 0;
        for hash in queue.layout.all_users().take(41) {
            let entries: u64 = redis::cmd("HLEN")
                .arg(hash)
                .query(&mut queue.connection)
                .expect("hlen");
            users += entries;
        }
        let live = model
            .places
            .values()
            .filter(|s| !matches!(s, State::Ended(_)))
            .count() as u64;
        prop_assert_eq!(users, live, "users entries of live places");
    }
    // Every key of the queue expires some day, so a finished sale leaves nothing behind.
    let data: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{tag}:[mup]*"))
        .query(&mut queue.connection)
        .expect("keys");
    for key in &data {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query(&mut queue.connection)
            .expect("pttl");
        prop_assert!(ttl != -1, "{key} never expires");
    }
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{tag}:*"))
        .query(&mut queue.connection)
        .expect("keys");
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query(&mut queue.connection)
            .expect("cleanup");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_script_admits_exactly_as_the_core_rules_decide(
        rate in 1u32..12,
        max_active in 1u32..30,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        run(rate, max_active, ops)?;
    }
}

/// Redis bytes per waiting fan: everything a queue of `fans` fans who joined and polled
/// once keeps (meta, the place and user hashes, the join and status counters of every fan
/// and of a distinct address each, with the keys' own overhead), as `MEMORY USAGE` counts.
fn bytes_per_waiting_fan(fans: u64) -> u64 {
    let id = format!("t-memory-{}", std::process::id());
    let queue = QueueId::parse(&id).expect("queue id");
    let mut connection = redis::Client::open(e2e::redis_url())
        .expect("redis url")
        .get_connection()
        .expect("connecting to redis");
    let script = redis::Script::new(waiting_room_script::SCRIPT);
    let mut run = |call: ScriptCall| -> Vec<Value> {
        let mut invocation = script.prepare_invoke();
        for key in &call.keys {
            invocation.key(key);
        }
        for arg in &call.args {
            invocation.arg(arg);
        }
        match invocation.invoke(&mut connection).expect("script") {
            Value::Array(reply) => reply,
            other => panic!("unexpected reply {other:?}"),
        }
    };
    let policy = AdmissionPolicy::new(1, 10, Duration::from_secs(30), Duration::from_secs(600))
        .expect("policy");
    // Counters live until their window ends, in Redis's own time: a minute's window (T0
    // starts one, and the joins span 2 s of it) outlives the measurement on any machine.
    let limit = |max| RateLimit::new(max, Duration::from_secs(60)).expect("limit");
    let (join_limits, status_limits) = (
        AbuseLimits {
            per_user: limit(10),
            per_address: limit(1_000),
        },
        AbuseLimits {
            per_user: limit(30),
            per_address: limit(5_000),
        },
    );
    run(
        ScriptCall::new(&queue, "configure", Timestamp::from_unix_millis(T0))
            .arg(1)
            .arg(1)
            .arg(10)
            .arg(30_000)
            .arg(600_000),
    );
    for fan in 0..fans {
        // Ids and addresses as a real sale sees them: scattered, one address a fan.
        let user = UserId::new(10_000_000 + fan * 7_919 % 89_999_999).expect("user");
        let address = format!("10.{}.{}.{}", fan >> 16, (fan >> 8) & 255, fan & 255);
        let caller = Caller {
            user_id: user,
            address: Some(&address),
        };
        let now = Timestamp::from_unix_millis(T0 + fan / 10);
        let joined = run(ScriptCall::join(
            &queue,
            &caller,
            &join_limits,
            &policy,
            now,
        ));
        assert_eq!(text(&joined[0]), "JOINED");
        let status = ScriptCall::new(&queue, "status", now)
            .arg(int(&joined[1]))
            .arg(user)
            .limited(&queue, "status", &caller, &status_limits);
        assert_eq!(text(&run(status)[0]), "WAITING");
    }
    let data: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{q:{id}}}:*"))
        .query(&mut connection)
        .expect("keys");
    let mut bytes = 0;
    for key in &data {
        let usage: u64 = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .arg("SAMPLES")
            .arg(0)
            .query(&mut connection)
            .expect("memory usage");
        bytes += usage;
    }
    let _: () = redis::cmd("DEL")
        .arg(&data)
        .query(&mut connection)
        .expect("cleanup");
    bytes / fans
}

#[test]
fn a_waiting_fan_costs_redis_at_most_150_bytes() {
    let bytes = bytes_per_waiting_fan(20_000);
    eprintln!("Redis bytes per waiting fan: {bytes}");
    assert!(bytes <= 150, "{bytes} bytes per waiting fan");
}

/// The draw of a scheduled queue, step by step with a simulated clock: the seed stays
/// secret before the opening, one caller at a time holds the draw, and a chunk repeated by
/// a second caller (after the first was interrupted) changes nothing, so no place is given
/// twice and the placed order is the core's draw.
#[test]
fn a_draw_interrupted_halfway_is_finished_by_the_next_caller_without_a_place_given_twice() {
    use ticketing_core::draw::DrawSeed;
    let id = crate::queue::fresh_queue("draw");
    let tag = format!("{{q:{id}}}");
    let mut queue = Queue {
        keys: ["meta", "u:", "p:", "passes", "rl:u", "rl:a"]
            .iter()
            .map(|k| format!("{tag}:{k}"))
            .collect(),
        layout: QueueKeys::new(&QueueId::parse(&id).expect("queue id")),
        connection: redis::Client::open(e2e::redis_url())
            .expect("redis url")
            .get_connection()
            .expect("connecting to redis"),
    };
    let seed = DrawSeed::from_bytes([42; 32]);
    let opens_at = T0 + 10_000;
    let created = queue.call(&args(&[
        &"configure",
        &T0,
        &1,
        &100,
        &100,
        &30_000,
        &10_000,
        &opens_at,
        &seed.commitment(),
        &seed,
    ]));
    assert_eq!(text(&created[0]), "QUEUE");
    let join = |queue: &mut Queue, user: u64, now: u64| {
        queue.call(&args(&[
            &"join", &now, &user, &user, &0, &1_000, &"a", &0, &1_000, &0, &100, &100, &30_000,
            &10_000,
        ]))
    };
    for user in 1..=10u64 {
        let entered = join(&mut queue, user * 7, T0 + user);
        assert_eq!(text(&entered[0]), "ENTERED");
        assert_eq!(
            int(&entered[1]),
            user,
            "entries are numbered in arrival order"
        );
    }
    let plan = |queue: &mut Queue, now: u64| queue.call(&args(&[&"draw_plan", &now, &5_000]));
    assert_eq!(text(&plan(&mut queue, opens_at - 1)[0]), "NOT_YET");
    let info = queue.call(&args(&[&"draw_info", &(opens_at - 1)]));
    assert_eq!(text(&info[5]), "", "no seed before the opening");

    let first = plan(&mut queue, opens_at);
    assert_eq!(text(&first[0]), "PLAN");
    assert_eq!((int(&first[1]), int(&first[2])), (10, 0));
    assert_eq!(text(&first[3]), seed.to_string());
    assert_eq!(text(&plan(&mut queue, opens_at + 1)[0]), "BUSY");

    let listed: Vec<UserId> = queue
        .call(&args(&[&"entrants", &opens_at, &0, &100]))
        .iter()
        .map(|v| UserId::parse(&text(v)).expect("a user id"))
        .collect();
    assert_eq!(listed.len(), 10);
    let order = seed.order(&listed);
    let draw = |queue: &mut Queue, start: usize, users: &[UserId]| {
        let mut call = args(&[&"draw", &(opens_at + 2), &start]);
        call.extend(users.iter().map(ToString::to_string));
        let reply = queue.call(&call);
        (text(&reply[0]), int(&reply[1]))
    };
    assert_eq!(draw(&mut queue, 0, &order[..4]), ("DRAWN".into(), 4));
    // The first caller's chunk again (say, from a caller whose lease had lapsed): no-op.
    assert_eq!(draw(&mut queue, 0, &order[..4]), ("DRAWN".into(), 4));
    // A latecomer who arrives mid-draw still lines up behind every entrant.
    let late = join(&mut queue, 999, opens_at + 3);
    assert_eq!((text(&late[0]), int(&late[1])), ("JOINED".into(), 11));
    assert_eq!(draw(&mut queue, 4, &order[4..]), ("DRAWN".into(), 10));
    assert_eq!(text(&plan(&mut queue, opens_at + 4)[0]), "DONE");

    let placed: Vec<UserId> = queue
        .call(&args(&[&"drawn_order", &(opens_at + 4), &1, &10]))
        .iter()
        .map(|v| UserId::parse(&text(v)).expect("a user id"))
        .collect();
    assert_eq!(placed, order);
    let info = queue.call(&args(&[&"draw_info", &(opens_at + 4)]));
    assert_eq!(
        text(&info[5]),
        seed.to_string(),
        "the seed is revealed after the draw"
    );
    let third = order[2];
    let polled = queue.call(&args(&[
        &"entry",
        &(opens_at + 5),
        &third,
        &third,
        &0,
        &1_000,
        &"a",
        &0,
        &1_000,
    ]));
    assert_eq!((text(&polled[0]), int(&polled[1])), ("PLACED".into(), 3));
}
