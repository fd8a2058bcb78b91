//! The seats and payment stores against the core's state machines: random sequences of
//! holds, cancellations, payments (new keys and replays) and refunds by two users over four
//! seats of a concert capped at three seats per fan run through the API on real MariaDB and
//! Redis, and through the core's rules (`SeatSelection::hold_all`, `FanCap`, `SeatState`,
//! `Reservation`, `Balance`, `RefundPolicy` and `PaymentStatus::can_become`). Every answer's status, and after every step the seat map,
//! each reservation's status and each balance, must be what the core decides.

use std::sync::OnceLock;

use crate::payment::approving;
use e2e::{App, Gateway, Venue, capped_venue, get, key, pay, post, seat_map, user};
use proptest::prelude::*;
use serde_json::{Value, json};
use ticketing_core::ApiError;
use ticketing_core::ids::{PaymentId, ReservationId, ScheduleId, SeatId, UserId};
use ticketing_core::money::{Amount, Balance};
use ticketing_core::payment::{FailureReason, PaymentStatus, RefundDecision, RefundPolicy};
use ticketing_core::seats::{
    FanCap, FanHolding, HoldPolicy, Reservation, ReservationStatus, SeatSelection, SeatState,
};
use ticketing_core::time::Timestamp;

const PRICE: u64 = 10_000;
/// Two seats and a half: a user can pay for two seats, not for a third.
const OPENING: u64 = 25_000;
const SEATS: usize = 4;
/// Below the four seats one request may take, so the cap, not the request, refuses.
const SEATS_PER_FAN: u32 = 3;
const USERS: usize = 2;
const QUEUE: &str = "store-model";

/// One app and gateway for every case: starting them is the slow part.
struct Harness {
    runtime: tokio::runtime::Runtime,
    app: App,
    _gateway: Gateway,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let gateway = Gateway::start(approving());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let app = runtime.block_on(App::start(&[
            ("GATEWAY_URL", gateway.url.as_str()),
            // A buyer goes back through the queue after every payment.
            ("QUEUE_JOIN_LIMIT_PER_USER", "0"),
            ("QUEUE_STATUS_LIMIT_PER_USER", "0"),
        ]));
        Harness {
            runtime,
            app,
            _gateway: gateway,
        }
    })
}

#[derive(Clone, Debug)]
enum Op {
    Hold {
        user: usize,
        seats: Vec<usize>,
    },
    Cancel {
        user: usize,
        pick: usize,
    },
    /// With a new Idempotency-Key, or (`replay`) the key of one of the user's payments.
    Pay {
        user: usize,
        pick: usize,
        replay: bool,
    },
    Refund {
        user: usize,
        pick: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..USERS, proptest::collection::vec(0..SEATS, 1..=3))
            .prop_map(|(user, seats)| Op::Hold { user, seats }),
        1 => (0..USERS, any::<usize>()).prop_map(|(user, pick)| Op::Cancel { user, pick }),
        3 => (0..USERS, any::<usize>(), any::<bool>())
            .prop_map(|(user, pick, replay)| Op::Pay { user, pick, replay }),
        1 => (0..USERS, any::<usize>()).prop_map(|(user, pick)| Op::Refund { user, pick }),
    ]
}

/// A payment the app recorded, as the core sees it.
struct Paid {
    /// As the answers name it (a refused payment's answer may not).
    id: Option<PaymentId>,
    user: usize,
    reservation: usize,
    key: String,
    /// The status code its first answer had, which every replay must repeat.
    answered: u16,
    status: PaymentStatus,
}

/// The core's view of the venue, the users and their money.
struct Model {
    policy: HoldPolicy,
    seats: Vec<SeatState>,
    reservations: Vec<(Reservation, usize)>,
    balances: Vec<Balance>,
    payments: Vec<Paid>,
}

/// The users' ids, and their passes (`None` once consumed by a payment).
struct Users {
    ids: Vec<u64>,
    passes: Vec<Option<String>>,
    /// A token that names the user for reads, consumed or not.
    readers: Vec<String>,
}

impl Users {
    /// The user's active pass, through the queue again if the last one was consumed.
    async fn pass(&mut self, app: &App, user: usize) -> String {
        if self.passes[user].is_none() {
            let pass = app.pass(QUEUE, self.ids[user]).await;
            self.readers[user] = pass.clone();
            self.passes[user] = Some(pass);
        }
        self.passes[user].clone().expect("a pass")
    }

    /// A token naming the user: the last pass it had, even consumed, or a new one.
    async fn pass_or_reader(&mut self, app: &App, user: usize) -> String {
        if self.readers[user].is_empty() {
            return self.pass(app, user).await;
        }
        self.readers[user].clone()
    }
}

fn now() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now())
}

fn status_of(error: impl Into<ApiError>) -> u16 {
    error.into().http_status()
}

fn seat_ids(venue: &Venue, picks: &[usize]) -> Vec<SeatId> {
    picks
        .iter()
        .map(|&i| SeatId::new(venue.seats[i]).expect("a seat id"))
        .collect()
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let app = &harness().app;
    let venue = capped_venue(SEATS as u64, PRICE, SEATS_PER_FAN).await;
    let cap = FanCap::new(std::num::NonZeroU32::new(SEATS_PER_FAN).expect("a cap"));
    let schedule = ScheduleId::new(venue.schedule).expect("a schedule id");
    let mut users = Users {
        ids: Vec::new(),
        passes: vec![None; USERS],
        readers: vec![String::new(); USERS],
    };
    for _ in 0..USERS {
        users.ids.push(user(OPENING).await);
    }
    let mut model = Model {
        policy: HoldPolicy::default(),
        seats: vec![SeatState::Available; SEATS],
        reservations: Vec::new(),
        balances: vec![Balance::new(OPENING).expect("a balance"); USERS],
        payments: Vec::new(),
    };
    for op in ops {
        match op {
            Op::Hold { user, seats } => {
                let pass = users.pass(app, user).await;
                let wanted = seat_ids(&venue, &seats);
                let (status, body) = post(
                    app,
                    "/api/reservations",
                    &pass,
                    None,
                    json!({ "scheduleId": venue.schedule, "seatIds": wanted }),
                )
                .await;
                let selection = match SeatSelection::new(schedule, &wanted, &model.policy) {
                    Ok(selection) => selection,
                    Err(error) => {
                        prop_assert_eq!(status, status_of(error), "{}", body);
                        continue;
                    }
                };
                let states: Vec<(SeatId, SeatState)> = selection
                    .seats()
                    .iter()
                    .map(|seat| (*seat, model.seats[venue_index(&venue, *seat)]))
                    .collect();
                // The id is the app's; the core's answer does not depend on it.
                let placeholder = ReservationId::new(u64::MAX >> 1).expect("an id");
                let holdings: Vec<FanHolding> = model
                    .reservations
                    .iter()
                    .filter(|(_, holder)| *holder == user)
                    .map(|(r, _)| FanHolding {
                        reservation: r.id,
                        status: r.status,
                        expires_at: r.expires_at,
                        seats: r.seat_ids.len() as u32,
                    })
                    .collect();
                // Plainly taken seats are refused before the cap is counted.
                let decided = selection
                    .hold_all(&states, placeholder, now(), &model.policy)
                    .and_then(|held| {
                        cap.allows(&holdings, selection.seats().len(), now())
                            .map(|()| held)
                    });
                match decided {
                    Ok(_) => {
                        prop_assert_eq!(status, 201, "{}", body);
                        let id = ReservationId::new(body["reservationId"].as_u64().expect("id"))
                            .expect("a reservation id");
                        let held = selection
                            .hold_all(&states, id, now(), &model.policy)
                            .expect("held");
                        for (seat, state) in held {
                            model.seats[venue_index(&venue, seat)] = state;
                        }
                        let reservation = Reservation {
                            id,
                            user_id: UserId::new(users.ids[user]).expect("a user id"),
                            schedule_id: schedule,
                            status: ReservationStatus::Held,
                            seat_ids: selection.seats().to_vec(),
                            amount: Amount::new(PRICE * selection.seats().len() as u64)
                                .expect("an amount"),
                            expires_at: model.policy.hold_expiry(now()),
                        };
                        model.reservations.push((reservation, user));
                    }
                    Err(error) => {
                        prop_assert_eq!(status, status_of(error.clone()), "{}", body);
                        let expected = ApiError::from(error).details.expect("details");
                        prop_assert_eq!(body["details"].clone(), expected);
                    }
                }
            }
            Op::Cancel { user, pick } if !model.reservations.is_empty() => {
                let index = pick % model.reservations.len();
                let (reservation, _) = model.reservations[index].clone();
                let path = format!("/api/reservations/{}", reservation.id);
                let auth = format!("Bearer {}", users.pass(app, user).await);
                let response = app
                    .call("DELETE", &path, None, &[("authorization", &auth)])
                    .await;
                let expected = reservation
                    .ensure_owner(users_id(&users, user))
                    .map_err(status_of)
                    .and_then(|()| reservation.cancel(now()).map_err(status_of));
                match expected {
                    Ok(cancelled) => {
                        prop_assert_eq!(response.status, 200, "{}", response.body);
                        model.reservations[index].0.status = cancelled;
                        for seat in &reservation.seat_ids {
                            let i = venue_index(&venue, *seat);
                            model.seats[i] = model.seats[i].release(reservation.id);
                        }
                    }
                    Err(code) => prop_assert_eq!(response.status, code, "{}", response.body),
                }
            }
            Op::Pay { user, pick, replay } if !model.reservations.is_empty() => {
                let own: Vec<usize> = (0..model.payments.len())
                    .filter(|&i| model.payments[i].user == user)
                    .collect();
                if replay && !own.is_empty() {
                    let first = &model.payments[own[pick % own.len()]];
                    let reservation = model.reservations[first.reservation].0.id;
                    let token = users.pass_or_reader(app, user).await;
                    let (status, body) = pay(app, &token, reservation.get(), &first.key).await;
                    prop_assert_eq!(status, first.answered, "replay: {}", body);
                    prop_assert_eq!(payment_named(&body), first.id, "{}", body);
                    continue;
                }
                let index = pick % model.reservations.len();
                let (reservation, _) = model.reservations[index].clone();
                let pass = users.pass(app, user).await;
                let key = key();
                let (status, body) = pay(app, &pass, reservation.id.get(), &key).await;
                let checked = reservation
                    .ensure_owner(users_id(&users, user))
                    .map_err(status_of)
                    .and_then(|()| reservation.ensure_payable(now()).map_err(status_of));
                if let Err(code) = checked {
                    prop_assert_eq!(status, code, "{}", body);
                    continue;
                }
                let payment_id = payment_named(&body);
                let settled = match model.balances[user].debit(reservation.amount) {
                    Ok(after) => {
                        prop_assert_eq!(status, 201, "{}", body);
                        prop_assert!(payment_id.is_some(), "{}", body);
                        model.balances[user] = after;
                        model.reservations[index].0.status =
                            reservation.confirm(now()).expect("a live hold confirms");
                        for seat in &reservation.seat_ids {
                            let i = venue_index(&venue, *seat);
                            model.seats[i] = model.seats[i]
                                .sell(reservation.id, now())
                                .expect("a held seat sells");
                        }
                        users.passes[user] = None;
                        PaymentStatus::Succeeded
                    }
                    Err(_) => {
                        let placeholder = PaymentId::new(1).expect("an id");
                        let expected = FailureReason::InsufficientBalance.error(placeholder);
                        prop_assert_eq!(status, expected.http_status(), "{}", body);
                        prop_assert_eq!(body["error"].clone(), json!(expected.code));
                        PaymentStatus::Failed
                    }
                };
                prop_assert!(PaymentStatus::Pending.can_become(settled));
                model.payments.push(Paid {
                    id: payment_id,
                    user,
                    reservation: index,
                    key,
                    answered: status,
                    status: settled,
                });
            }
            Op::Refund { user, pick } if model.payments.iter().any(|p| p.id.is_some()) => {
                let sold: Vec<usize> = (0..model.payments.len())
                    .filter(|&i| model.payments[i].id.is_some())
                    .collect();
                let index = sold[pick % sold.len()];
                let paid = &model.payments[index];
                let path = format!("/api/payments/{}/refund", paid.id.expect("an id"));
                let auth = format!("Bearer {}", users.pass_or_reader(app, user).await);
                let response = app
                    .call("POST", &path, None, &[("authorization", &auth)])
                    .await;
                if paid.user != user {
                    prop_assert_eq!(response.status, 403, "{}", response.body);
                    continue;
                }
                let decision = RefundPolicy::default().decide(
                    paid.status,
                    // The test venue's show starts in 30 days.
                    now().saturating_add(std::time::Duration::from_secs(30 * 86_400)),
                    now(),
                );
                match decision {
                    Ok(RefundDecision::Refund) => {
                        prop_assert_eq!(response.status, 200, "{}", response.body);
                        prop_assert!(paid.status.can_become(PaymentStatus::Refunded));
                        let (reservation, owner) = model.reservations[paid.reservation].clone();
                        model.balances[owner] = model.balances[owner]
                            .credit(reservation.amount)
                            .expect("a refund credits");
                        model.reservations[paid.reservation].0.status = reservation
                            .refund(now())
                            .expect("a confirmed reservation refunds");
                        for seat in &reservation.seat_ids {
                            let i = venue_index(&venue, *seat);
                            model.seats[i] = model.seats[i]
                                .refund(reservation.id)
                                .expect("a sold seat refunds");
                        }
                        model.payments[index].status = PaymentStatus::Refunded;
                    }
                    Ok(RefundDecision::AlreadyRefunded) => {
                        prop_assert_eq!(response.status, 200, "{}", response.body);
                    }
                    Err(error) => {
                        prop_assert_eq!(response.status, status_of(error), "{}", response.body)
                    }
                }
                prop_assert_eq!(
                    response.json()["status"].clone(),
                    json!(model.payments[index].status)
                );
            }
            Op::Cancel { .. } | Op::Pay { .. } | Op::Refund { .. } => {}
        }
        agree(app, &venue, &mut users, &model).await?;
    }
    Ok(())
}

/// The payment an answer names: a success's own id, or a failure's `details`.
fn payment_named(body: &Value) -> Option<PaymentId> {
    body["paymentId"]
        .as_u64()
        .or_else(|| body["details"]["paymentId"].as_u64())
        .and_then(|id| PaymentId::new(id).ok())
}

fn venue_index(venue: &Venue, seat: SeatId) -> usize {
    venue
        .seats
        .iter()
        .position(|s| *s == seat.get())
        .expect("a seat of the venue")
}

fn users_id(users: &Users, user: usize) -> UserId {
    UserId::new(users.ids[user]).expect("a user id")
}

/// The seat map, every reservation's status and every balance, as the app tells them, are
/// what the model holds.
async fn agree(
    app: &App,
    venue: &Venue,
    users: &mut Users,
    model: &Model,
) -> Result<(), TestCaseError> {
    let map = seat_map(app, venue.schedule).await;
    let free: Vec<u64> = map["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .map(|seat| seat["seatId"].as_u64().expect("a seat id"))
        .collect();
    let at = now();
    let expected: Vec<u64> = (0..SEATS)
        .filter(|&i| model.seats[i].is_holdable(at))
        .map(|i| venue.seats[i])
        .collect();
    prop_assert_eq!(free, expected, "the seat map");
    for (reservation, owner) in &model.reservations {
        let token = users.pass_or_reader(app, *owner).await;
        let shown = get(
            app,
            &format!("/api/reservations/{}", reservation.id),
            &format!("Bearer {token}"),
        )
        .await;
        prop_assert_eq!(
            shown["status"].clone(),
            json!(reservation.effective_status(at)),
            "reservation {}",
            reservation.id
        );
    }
    for user in 0..USERS {
        let token = users.pass_or_reader(app, user).await;
        let shown: Value = get(
            app,
            &format!("/api/users/{}/balance", users.ids[user]),
            &format!("Bearer {token}"),
        )
        .await;
        prop_assert_eq!(
            shown["balance"].clone(),
            json!(model.balances[user]),
            "the balance of user {}",
            user
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn the_seat_and_payment_stores_move_seats_and_money_as_the_core_decides(
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        harness().runtime.block_on(run(ops))?;
    }
}
