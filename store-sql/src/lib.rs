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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_has_one_placeholder_per_value_it_names() {
        let count = |sql: &str| sql.matches('?').count();
        assert_eq!(count(&expire_holds(3)), 3);
        assert_eq!(count(&release_seat_links(2)), 1 + 2);
        assert_eq!(count(&free_seats(TakenBy::Hold, 4, 2)), 4 + 2);
    }

    #[test]
    fn seats_go_back_on_sale_only_from_the_state_named() {
        assert!(free_seats(TakenBy::Hold, 1, 1).contains("status = 'HELD'"));
        assert!(free_seats(TakenBy::Sale, 1, 1).contains("status = 'SOLD'"));
    }
}
