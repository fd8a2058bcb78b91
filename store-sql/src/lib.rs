//! SQL statements more than one store runs. The seats and payment components reach MySQL
//! through Spin and the bridge through `mysql_async`, so they cannot share a store; they
//! share the statements instead, so that what ending a hold or giving seats back means is
//! written once. Each function returns a statement's text for a number of values, and says
//! the order of its parameters.

/// The core's `SeatState::is_holdable` over a `seats` row as SQL; `?` is the current time.
/// A hold that lapsed leaves its seat open to the next holder before any sweeper ends it.
pub const HOLDABLE: &str = "(status = 'AVAILABLE' OR (status = 'HELD' AND held_until <= ?))";

/// `?, ?, ?` for an `IN (…)` list of `n` values.
pub fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// What a seat goes back on sale from: a hold that ended (cancelled or lapsed) or a sale
/// that was refunded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TakenBy {
    Hold,
    Sale,
}

impl TakenBy {
    fn status(self) -> &'static str {
        match self {
            TakenBy::Hold => "HELD",
            TakenBy::Sale => "SOLD",
        }
    }
}

/// Marks `reservations` lapsed holds EXPIRED. Run under the lock of a `SELECT … FOR UPDATE`
/// that found them HELD and lapsed; the status is checked again, so a hold ends once.
/// Parameters: the reservation ids.
pub fn expire_holds(reservations: usize) -> String {
    format!(
        "UPDATE reservations SET status = 'EXPIRED' \
         WHERE status = 'HELD' AND id IN ({})",
        placeholders(reservations)
    )
}

/// Ends the seat links of `reservations` reservations that are still live, which frees
/// the seats for the unique index on live links.
/// Parameters: the release time, then the reservation ids.
pub fn release_seat_links(reservations: usize) -> String {
    format!(
        "UPDATE reservation_seats SET released_at = ? \
         WHERE released_at IS NULL AND reservation_id IN ({})",
        placeholders(reservations)
    )
}

/// Puts `seats` seats back on sale if one of `reservations` reservations still has them
/// `taken` (a seat taken meanwhile by another reservation is left alone).
/// Parameters: the seat ids, then the reservation ids.
pub fn free_seats(taken: TakenBy, seats: usize, reservations: usize) -> String {
    format!(
        "UPDATE seats SET status = 'AVAILABLE', reservation_id = NULL, held_until = NULL, \
         version = version + 1 \
         WHERE status = '{}' AND id IN ({}) AND reservation_id IN ({})",
        taken.status(),
        placeholders(seats),
        placeholders(reservations)
    )
}

/// Locks the (fan, concert) rows of `fans` fans before their seats of the concert are
/// counted: a hold and a waitlist offer for one fan count one after the other.
/// Parameters: user id and concert id, for each fan.
pub fn lock_fans(fans: usize) -> String {
    format!(
        "INSERT INTO fan_concert_locks (user_id, concert_id) VALUES {} \
         ON DUPLICATE KEY UPDATE user_id = user_id",
        vec!["(?, ?)"; fans].join(", ")
    )
}

/// The reservations of `fans` fans in one concert that own (or owned until they lapsed)
/// seats, as the core's `FanHolding` counts them: user, reservation, status, expiry as text,
/// seats. Parameters: the user ids, then the concert id.
pub fn fan_holdings(fans: usize) -> String {
    format!(
        "SELECT r.user_id, r.id, r.status, CAST(r.expires_at AS CHAR), \
           (SELECT COUNT(*) FROM reservation_seats rs WHERE rs.reservation_id = r.id) \
         FROM reservations r JOIN schedules sc ON sc.id = r.schedule_id \
         WHERE r.user_id IN ({}) AND sc.concert_id = ? AND r.status IN ('HELD', 'CONFIRMED')",
        placeholders(fans)
    )
}

/// A new HELD reservation. Parameters: user, schedule, amount, expiry, creation time.
pub const INSERT_HOLD: &str = "INSERT INTO reservations (user_id, schedule_id, status, amount, expires_at, created_at) \
     VALUES (?, ?, 'HELD', ?, ?, ?)";

/// How a statement names the reservation that takes seats.
#[derive(Clone, Copy, Debug)]
pub enum Holder {
    /// A parameter, the statement's first.
    Param,
    /// The row the connection's last `INSERT` created (`LAST_INSERT_ID()`): a hold made in
    /// the same transaction need not read its id back first.
    LastInserted,
}

/// Holds `seats` seats of one schedule for a reservation if every one is still open to a
/// hold; the caller compares the rows changed with `seats` and rolls back on a shortfall.
/// Parameters: the reservation id (for [`Holder::Param`]), hold expiry, schedule id, the
/// current time, the seat ids.
pub fn take_seats(seats: usize, holder: Holder) -> String {
    let holder = match holder {
        Holder::Param => "?",
        Holder::LastInserted => "LAST_INSERT_ID()",
    };
    format!(
        "UPDATE seats SET status = 'HELD', reservation_id = {holder}, held_until = ?, \
         version = version + 1 \
         WHERE schedule_id = ? AND {HOLDABLE} AND id IN ({})",
        placeholders(seats)
    )
}

/// Links `seats` seats to the reservation that holds them.
/// Parameters: reservation id and seat id, for each seat.
pub fn link_seats(seats: usize) -> String {
    format!(
        "INSERT INTO reservation_seats (reservation_id, seat_id) VALUES {}",
        vec!["(?, ?)"; seats].join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_has_one_placeholder_per_value_it_names() {
        let count = |sql: &str| sql.matches('?').count();
        assert_eq!(count(&expire_holds(3)), 3);
        assert_eq!(count(&release_seat_links(2)), 1 + 2);
        assert_eq!(count(&free_seats(TakenBy::Hold, 4, 2)), 4 + 2);
        assert_eq!(count(&lock_fans(3)), 2 * 3);
        assert_eq!(count(&fan_holdings(3)), 3 + 1);
        assert_eq!(count(INSERT_HOLD), 5);
        assert_eq!(count(&take_seats(2, Holder::Param)), 4 + 2);
        assert_eq!(count(&take_seats(2, Holder::LastInserted)), 3 + 2);
        assert_eq!(count(&link_seats(2)), 2 * 2);
    }

    #[test]
    fn seats_go_back_on_sale_only_from_the_state_named() {
        assert!(free_seats(TakenBy::Hold, 1, 1).contains("status = 'HELD'"));
        assert!(free_seats(TakenBy::Sale, 1, 1).contains("status = 'SOLD'"));
    }
}
