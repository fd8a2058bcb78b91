//! The waiting room through the host against real Redis (functions/queue and the
//! waiting-room script).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2e::{App, PASS_SIGNING_KEY};
use serde_json::{Value, json};
use ticketing_core::ids::{QueueId, UserId};
use ticketing_core::pass::{Claims, PassKey, TokenKind};
use ticketing_core::queue::Position;
use ticketing_core::time::Timestamp;

/// A queue id no other test (or earlier run) uses.
pub(crate) fn fresh_queue(label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("t-{label}-{}-{n}", nanos % 1_000_000_000_000)
}

pub(crate) fn pass_key() -> PassKey {
    PassKey::new(PASS_SIGNING_KEY.as_bytes()).expect("a strong test key")
}

/// Creates `queue` open with the given policy fields.
async fn configure(app: &App, queue: &str, settings: Value) {
    let response = app
        .admin(
            "PUT",
            &format!("/api/admin/queue?queueId={queue}"),
            Some(&settings),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
}

async fn overview(app: &App, queue: &str) -> Value {
    let response = app
        .admin("GET", &format!("/api/admin/queue?queueId={queue}"), None)
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    response.json()
}

pub(crate) async fn join(app: &App, queue: &str, user: u64) -> (u16, Value) {
    let response = app
        .call(
            "POST",
            "/api/queue/tokens",
            Some(&json!({ "userId": user, "queueId": queue })),
            &[],
        )
        .await;
    (response.status, response.json())
}

async fn status(app: &App, token: &str) -> (u16, Value) {
    let response = status_response(app, token).await;
    (response.status, response.json())
}

pub(crate) async fn status_response(app: &App, token: &str) -> edge_testkit::Response {
    let auth = format!("Bearer {token}");
    app.call(
        "GET",
        "/api/queue/status",
        None,
        &[("authorization", &auth)],
    )
    .await
}

pub(crate) const NO_LIMITS: [(&str, &str); 4] = [
    ("QUEUE_JOIN_LIMIT_PER_USER", "0"),
    ("QUEUE_JOIN_LIMIT_PER_ADDRESS", "0"),
    ("QUEUE_STATUS_LIMIT_PER_USER", "0"),
    ("QUEUE_STATUS_LIMIT_PER_ADDRESS", "0"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_joins_get_positions_one_to_ten_thousand() {
    let app = Arc::new(App::start(&NO_LIMITS).await);
    let queue = fresh_queue("spike");
    configure(&app, &queue, json!({ "ratePerSec": 1 })).await;
    let joins: Vec<_> = (1..=10_000u64)
        .map(|user| {
            let app = app.clone();
            let queue = queue.clone();
            tokio::spawn(async move { join(&app, &queue, 1_000_000 + user).await })
        })
        .collect();
    let mut positions = Vec::new();
    for handle in joins {
        let (status, body) = handle.await.unwrap();
        assert_eq!(status, 201, "{body}");
        positions.push(body["position"].as_u64().unwrap());
    }
    positions.sort_unstable();
    assert_eq!(positions, (1..=10_000).collect::<Vec<_>>());
    let overview = overview(&app, &queue).await;
    assert_eq!(overview["joined"], 10_000);
    assert_eq!(overview["waiting"], 10_000);
    Arc::into_inner(app).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rejoins_by_the_same_users_create_no_extra_places() {
    let app = Arc::new(App::start(&NO_LIMITS).await);
    let queue = fresh_queue("rejoin");
    configure(&app, &queue, json!({ "ratePerSec": 1 })).await;
    let joins: Vec<_> = (0..2_000u64)
        .map(|attempt| {
            let app = app.clone();
            let queue = queue.clone();
            let user = 500 + attempt % 200;
            tokio::spawn(async move { (user, join(&app, &queue, user).await) })
        })
        .collect();
    let mut seen: HashMap<u64, (u64, String)> = HashMap::new();
    let mut created = 0;
    for handle in joins {
        let (user, (status, body)) = handle.await.unwrap();
        assert!(status == 201 || status == 200, "{status} {body}");
        created += usize::from(status == 201);
        let place = (
            body["position"].as_u64().unwrap(),
            body["token"].as_str().unwrap().to_owned(),
        );
        let first = seen.entry(user).or_insert_with(|| place.clone());
        assert_eq!(*first, place, "user {user} got a second place or token");
    }
    assert_eq!(created, 200, "exactly one 201 per user");
    let positions: BTreeSet<u64> = seen.values().map(|(p, _)| *p).collect();
    assert_eq!(positions, (1..=200).collect());
    let overview = overview(&app, &queue).await;
    assert_eq!(overview["joined"], 200);
    Arc::into_inner(app).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_keeps_the_order_and_the_cap_holds_under_concurrent_polling() {
    let app = Arc::new(App::start(&NO_LIMITS).await);
    let queue = fresh_queue("cap");
    configure(&app, &queue, json!({ "ratePerSec": 40, "maxActive": 25 })).await;
    let mut tickets = Vec::new();
    for user in 1..=60u64 {
        let (status, body) = join(&app, &queue, user).await;
        assert_eq!(status, 201, "{body}");
        tickets.push(body["token"].as_str().unwrap().to_owned());
    }
    let key = pass_key();
    let mut admitted: BTreeSet<u64> = BTreeSet::new();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        // Everyone polls at once, in random-ish order (tasks race).
        let polls: Vec<_> = tickets
            .iter()
            .cloned()
            .map(|ticket| {
                let app = app.clone();
                tokio::spawn(async move { status(&app, &ticket).await })
            })
            .collect();
        let mut active_now = BTreeSet::new();
        let mut waiting_now = BTreeSet::new();
        for (index, handle) in polls.into_iter().enumerate() {
            let (code, body) = handle.await.unwrap();
            assert_eq!(code, 200, "{body}");
            let position = index as u64 + 1;
            match body["status"].as_str().unwrap() {
                "ACTIVE" => {
                    let claims = key
                        .verify(
                            body["pass"].as_str().unwrap(),
                            TokenKind::Pass,
                            &QueueId::parse(&queue).unwrap(),
                            Timestamp::from_unix_millis(now_ms()),
                        )
                        .expect("a valid pass");
                    assert_eq!(claims.position.get(), position);
                    assert_eq!(claims.user_id.get(), position);
                    active_now.insert(position);
                }
                "WAITING" => {
                    assert_eq!(body["position"], position);
                    waiting_now.insert(position);
                }
                other => panic!("unexpected status {other}: {body}"),
            }
        }
        assert!(active_now.len() <= 25, "cap broken: {active_now:?}");
        assert!(
            admitted.is_subset(&active_now),
            "a pass disappeared before its expiry"
        );
        // One round's answers are no snapshot: an earlier position can answer WAITING just
        // before a later poll admits it together with the ones behind it. But every position
        // ahead of one admitted by the previous round was admitted before this round began.
        let front = admitted.last().copied().unwrap_or(0);
        let skipped: Vec<u64> = (1..=front).filter(|p| !active_now.contains(p)).collect();
        assert!(
            skipped.is_empty(),
            "{skipped:?} still waiting after {front} was admitted"
        );
        admitted = active_now;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Once the line stands still (the cap is reached), the admitted are its front.
    assert_eq!(
        admitted.into_iter().collect::<Vec<_>>(),
        (1..=25).collect::<Vec<_>>(),
        "the cap is reached and held by the first 25 places"
    );
    Arc::into_inner(app).unwrap().stop().await;
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tampered_and_wrong_kind_tokens_are_rejected() {
    let app = App::start(&NO_LIMITS).await;
    let queue = fresh_queue("tokens");
    configure(&app, &queue, json!({})).await;
    let (_, joined) = join(&app, &queue, 77).await;
    let ticket = joined["token"].as_str().unwrap();
    assert_eq!(status(&app, ticket).await.0, 200);

    let queue_id = QueueId::parse(&queue).unwrap();
    let key = pass_key();
    let expired = key.sign(&Claims::queue_ticket(
        queue_id.clone(),
        UserId::new(77).unwrap(),
        Position::new(1).unwrap(),
        Timestamp::from_unix_millis(now_ms() - Claims::TICKET_TTL.as_millis() as u64 - 1),
    ));
    let mut tampered = ticket.as_bytes().to_vec();
    tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
    let forged = PassKey::new(&[7u8; 32])
        .unwrap()
        .sign(&Claims::queue_ticket(
            queue_id.clone(),
            UserId::new(77).unwrap(),
            Position::new(1).unwrap(),
            Timestamp::from_unix_millis(now_ms()),
        ));
    let pass_as_ticket = key.sign(&Claims::pass(
        queue_id,
        UserId::new(77).unwrap(),
        Position::new(1).unwrap(),
        Timestamp::from_unix_millis(now_ms()),
        Timestamp::from_unix_millis(now_ms() + 60_000),
    ));
    for (token, code) in [
        (expired.as_str(), "token_expired"),
        (
            std::str::from_utf8(&tampered).unwrap(),
            "token_bad_signature",
        ),
        (forged.as_str(), "token_bad_signature"),
        (pass_as_ticket.as_str(), "token_wrong_kind"),
        ("not-a-token!", "token_malformed"),
    ] {
        let (status_code, body) = status(&app, token).await;
        assert_eq!(status_code, 401, "{body}");
        assert_eq!(body["error"], code, "{body}");
    }
    let response = app.call("GET", "/api/queue/status", None, &[]).await;
    assert_eq!(response.status, 401);
    assert_eq!(response.json()["error"], "unauthenticated");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_json_4xx_that_names_the_problem() {
    let app = App::start(&NO_LIMITS).await;
    let queue = fresh_queue("input");
    configure(&app, &queue, json!({})).await;
    let cases: [(&str, &str, u16, &str); 8] = [
        (r#"{}"#, "missing field `userId`", 400, "bad_request"),
        (r#"{"userId":"abc"}"#, "userId", 400, "invalid_field"),
        (r#"{"userId":0}"#, "userId", 400, "invalid_field"),
        (r#"{"userId":-5}"#, "userId", 400, "invalid_field"),
        (
            r#"{"userId":1,"queueId":"No Such"}"#,
            "queueId",
            400,
            "invalid_field",
        ),
        (
            r#"{"userId":1,"extra":1}"#,
            "unknown field",
            400,
            "bad_request",
        ),
        (r#"{"userId":"#, "invalid request body", 400, "bad_request"),
        (
            r#"{"userId":1,"queueId":"nope-404"}"#,
            "nope-404",
            404,
            "not_found",
        ),
    ];
    for (body, mentions, status_code, code) in cases {
        let response = edge_testkit::send(
            app.server.addr(),
            "POST",
            "/api/queue/tokens",
            bytes::Bytes::from(body),
            &[("content-type", "application/json")],
        )
        .await;
        assert_eq!(response.status, status_code, "{body}: {}", response.body);
        let reply = response.json();
        assert_eq!(reply["error"], code, "{body}: {reply}");
        assert!(
            reply["message"].as_str().unwrap().contains(mentions),
            "{body}: {reply}"
        );
    }
    // An empty body, a wrong method and the closed queue.
    let response = app.call("POST", "/api/queue/tokens", None, &[]).await;
    assert_eq!(
        (response.status, response.json()["error"].clone()),
        (400, json!("bad_request"))
    );
    let response = app.call("DELETE", "/api/queue/tokens", None, &[]).await;
    assert_eq!(
        (response.status, response.json()["error"].clone()),
        (405, json!("method_not_allowed"))
    );
    assert_eq!(response.headers["allow"], "POST");
    let response = app.call("TRACE", "/api/admin/queue", None, &[]).await;
    assert_eq!(response.status, 405, "{}", response.body);
    assert_eq!(response.headers["allow"], "GET, PUT");
    let response = app.call("GET", "/api/queue/nowhere", None, &[]).await;
    assert_eq!(response.status, 404);
    configure(&app, &queue, json!({ "open": false })).await;
    let (code, body) = join(&app, &queue, 5).await;
    assert_eq!((code, body["error"].clone()), (409, json!("queue_closed")));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_the_admin_key_and_validates_changes() {
    let app = App::start(&NO_LIMITS).await;
    let queue = fresh_queue("admin");
    let path = format!("/api/admin/queue?queueId={queue}");
    let response = app.call("GET", &path, None, &[]).await;
    assert_eq!(response.status, 401);
    let response = app
        .call(
            "GET",
            &path,
            None,
            &[("authorization", "Bearer wrong-key-wrong-key")],
        )
        .await;
    assert_eq!(
        (response.status, response.json()["error"].clone()),
        (403, json!("forbidden"))
    );
    let response = app.admin("GET", &path, None).await;
    assert_eq!(
        (response.status, response.json()["error"].clone()),
        (404, json!("not_found"))
    );

    let created = app
        .admin(
            "PUT",
            &path,
            Some(&json!({ "ratePerSec": 7, "maxActive": 3 })),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let created = created.json();
    assert_eq!(created["open"], true);
    assert_eq!(created["ratePerSec"], 7);
    assert_eq!(created["maxActive"], 3);
    assert_eq!(created["passTtlSeconds"], 600);

    let changed = app
        .admin("PUT", &path, Some(&json!({ "open": false })))
        .await
        .json();
    assert_eq!(
        (changed["open"].clone(), changed["ratePerSec"].clone()),
        (json!(false), json!(7))
    );
    for bad in [
        json!({ "ratePerSec": 0 }),
        json!({ "maxActive": -1 }),
        json!({ "passTtlSeconds": 5 }),
    ] {
        let response = app.admin("PUT", &path, Some(&bad)).await;
        assert_eq!(response.status, 400, "{bad}: {}", response.body);
    }
    assert_eq!(app.admin("GET", &path, None).await.json(), changed);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_numbers_written_with_a_decimal_point_are_integers_and_fractions_are_refused() {
    let app = App::start(&NO_LIMITS).await;
    let queue = fresh_queue("decimal");
    let path = format!("/api/admin/queue?queueId={queue}");
    // json! keeps 874.0 a float, so the body reads "ratePerSec":874.0 on the wire.
    let whole = json!({ "ratePerSec": 874.0, "maxActive": 1200.0, "open": true });
    let response = app.admin("PUT", &path, Some(&whole)).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        (
            response.json()["ratePerSec"].clone(),
            response.json()["maxActive"].clone()
        ),
        (json!(874), json!(1200))
    );
    let (status, joined) = join(&app, &queue, 7).await;
    assert_eq!(status, 201, "{joined}");
    let response = app
        .admin("PUT", &path, Some(&json!({ "ratePerSec": 874.5 })))
        .await;
    assert_eq!(
        (response.status, response.json()["error"].clone()),
        (400, json!("bad_request")),
        "{}",
        response.body
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_fan_is_told_when_to_poll_again_and_fans_further_back_later() {
    // A budget of one poll a second for the whole line makes the pacing show with six fans.
    let app = App::start(&[("QUEUE_POLL_BUDGET_PER_SEC", "1")]).await;
    let queue = fresh_queue("pace");
    configure(&app, &queue, json!({ "ratePerSec": 1, "maxActive": 1 })).await;
    let mut tokens = Vec::new();
    for user in 0..6 {
        let (status, body) = join(&app, &queue, 9_100_000 + user).await;
        assert_eq!(status, 201, "{body}");
        tokens.push(body["token"].as_str().expect("token").to_owned());
    }
    let mut pauses = Vec::new();
    for token in &tokens {
        let response = status_response(&app, token).await;
        let body = response.json();
        if body["status"] != "WAITING" {
            continue;
        }
        let ms = body["pollAfterMs"].as_u64().expect("pollAfterMs");
        let retry_after: u64 = response.headers["retry-after"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("whole seconds");
        assert_eq!(retry_after, ms.div_ceil(1000), "{body}");
        assert!(ms >= 1000, "{body}");
        pauses.push((body["ahead"].as_u64().expect("ahead"), ms));
    }
    assert!(pauses.len() >= 4, "{pauses:?}");
    let nearest = pauses
        .iter()
        .min_by_key(|(ahead, _)| *ahead)
        .expect("a fan");
    let farthest = pauses
        .iter()
        .max_by_key(|(ahead, _)| *ahead)
        .expect("a fan");
    assert!(farthest.1 > nearest.1 + 2_000, "{pauses:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_head_of_the_line_is_public_cacheable_and_moves_with_admission() {
    let app = App::start(&[]).await;
    let queue = fresh_queue("head");
    let head = async |queue: &str| {
        let response = app
            .call(
                "GET",
                &format!("/api/queue/head?queueId={queue}"),
                None,
                &[],
            )
            .await;
        (
            response.status,
            response.headers.get("cache-control").cloned(),
            response.json(),
        )
    };
    // The first waiting position, the last one handed out, how many wait.
    let front = |body: &Value| {
        (
            body["firstWaitingPosition"].as_u64(),
            body["lastPosition"].as_u64(),
            body["waiting"].as_u64(),
        )
    };
    let (code, _, body) = head(&queue).await;
    assert_eq!(
        (code, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );

    configure(&app, &queue, json!({ "ratePerSec": 100, "maxActive": 1 })).await;
    let (code, cache_control, body) = head(&queue).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(cache_control.expect("cache-control"), "public, max-age=1");
    assert_eq!(front(&body), (Some(1), Some(0), Some(0)), "{body}");
    // Fans are told the operator's pace.
    assert_eq!(body["ratePerSec"], 100, "{body}");
    let mut tokens = Vec::new();
    for user in 0..3 {
        let (code, body) = join(&app, &queue, 9_200_000 + user).await;
        assert_eq!(code, 201, "{body}");
        tokens.push(body["token"].as_str().expect("token").to_owned());
    }
    let (_, _, body) = head(&queue).await;
    assert_eq!(front(&body), (Some(1), Some(3), Some(3)), "{body}");
    // Once the bucket holds a token, the first fan's poll admits it (one live pass at most):
    // the line's front moves past it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (code, body) = status(&app, &tokens[0]).await;
    assert_eq!(
        (code, body["status"].as_str()),
        (200, Some("ACTIVE")),
        "{body}"
    );
    let (_, _, body) = head(&queue).await;
    assert_eq!(
        (
            body["firstWaitingPosition"].as_u64(),
            body["waiting"].as_u64(),
            body["open"].as_bool()
        ),
        (Some(2), Some(2), Some(true)),
        "{body}"
    );
    let (code, _, body) = head("NOT-LOWERCASE").await;
    assert_eq!(code, 400, "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after() {
    let app = App::start(&[
        ("QUEUE_JOIN_LIMIT_PER_USER", "3"),
        ("QUEUE_JOIN_LIMIT_PER_ADDRESS", "8"),
        ("QUEUE_STATUS_LIMIT_PER_USER", "4"),
        ("QUEUE_STATUS_LIMIT_PER_ADDRESS", "0"),
        ("QUEUE_LIMIT_WINDOW_SECONDS", "30"),
    ])
    .await;
    let queue = fresh_queue("limits");
    configure(&app, &queue, json!({})).await;
    let second_queue = fresh_queue_joined(&app).await;
    // Limits count in fixed windows aligned to the clock: the requests below must all fall
    // into one window to meet its limits.
    let window_ms = 30_000;
    let into_window = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_millis() as u64
        % window_ms;
    if into_window > window_ms - 10_000 {
        tokio::time::sleep(Duration::from_millis(window_ms - into_window + 50)).await;
    }
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(join(&app, &queue, 1).await.0);
    }
    assert_eq!(codes, [201, 200, 200, 429], "per-user join limit");
    // Refused requests count too: four more users fill the address's 8, the ninth is refused.
    // Each sends a `spin-client-addr` of its own, which the host keeps before its own (as
    // Spin does): an app that read the client's copy would let every one of them through.
    let mut codes = Vec::new();
    for user in 2..=6 {
        let forged = format!("198.51.100.{user}:4000");
        let response = app
            .call(
                "POST",
                "/api/queue/tokens",
                Some(&json!({ "userId": user, "queueId": queue })),
                &[("spin-client-addr", &forged)],
            )
            .await;
        codes.push(response.status);
    }
    assert_eq!(codes, [201, 201, 201, 201, 429], "per-address join limit");

    let (_, joined) = join(&app, &second_queue, 9).await;
    let ticket = joined["token"].as_str().unwrap().to_owned();
    let auth = format!("Bearer {ticket}");
    let mut last = None;
    for _ in 0..5 {
        last = Some(
            app.call(
                "GET",
                "/api/queue/status",
                None,
                &[("authorization", &auth)],
            )
            .await,
        );
    }
    let limited = last.unwrap();
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert_eq!(limited.json()["error"], "rate_limited");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    app.stop().await;
}

/// A second queue, so that a test can get a fresh per-address budget for joins.
async fn fresh_queue_joined(app: &App) -> String {
    let queue = fresh_queue("limits2");
    configure(app, &queue, json!({})).await;
    queue
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_queue_is_created_on_the_first_join() {
    let mut redis = redis::Client::open(e2e::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("{q:default}:*")
        .query_async(&mut redis)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    let app = App::start(&[("QUEUE_RATE_PER_SEC", "12"), ("QUEUE_MAX_ACTIVE", "34")]).await;
    let response = app
        .call(
            "POST",
            "/api/queue/tokens",
            Some(&json!({ "userId": "42" })),
            &[],
        )
        .await;
    assert_eq!(response.status, 201, "{}", response.body);
    assert_eq!(response.json()["queueId"], "default");
    let overview = app.admin("GET", "/api/admin/queue", None).await.json();
    assert_eq!(overview["ratePerSec"], 12);
    assert_eq!(overview["maxActive"], 34);
    assert_eq!(overview["joined"], 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_configuration_is_a_json_500_that_tells_the_client_not_to_retry() {
    // Out of the variable's range: a deployment bug, which no retry can fix.
    let app = App::start(&[("QUEUE_RATE_PER_SEC", "0")]).await;
    // Sent around App::call, which counts every 5xx but 503 as a failure.
    let response = edge_testkit::send(
        app.server.addr(),
        "POST",
        "/api/queue/tokens",
        json!({ "userId": 1 }).to_string().into(),
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(response.status, 500, "{}", response.body);
    assert_eq!(response.json()["error"], "internal_error");
    assert!(!response.headers.contains_key("retry-after"));
    assert!(
        !response.body.contains("queue_rate_per_sec"),
        "the cause stays in the log: {}",
        response.body
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_is_a_json_503() {
    let app = App::start(&[
        ("REDIS_URL", "redis://127.0.0.1:1"),
        ("REDIS_HOST", "redis://127.0.0.1:1"),
    ])
    .await;
    let response = app
        .call(
            "POST",
            "/api/queue/tokens",
            Some(&json!({ "userId": 1 })),
            &[],
        )
        .await;
    assert_eq!(response.status, 503, "{}", response.body);
    assert_eq!(response.json()["error"], "service_unavailable");
    assert!(
        response.json()["message"]
            .as_str()
            .unwrap()
            .contains("redis")
    );
    app.stop().await;
}

#[test]
fn distinct_helper_queues_never_collide() {
    let ids: HashSet<String> = (0..100).map(|_| fresh_queue("x")).collect();
    assert_eq!(ids.len(), 100);
    assert!(ids.iter().all(|id| QueueId::parse(id).is_ok()));
}
