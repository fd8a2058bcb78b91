//! When this instance may open and close a MySQL connection, and what it does with one it
//! may not close yet.
//!
//! Spin 4.1 closes a connection (the resource's drop) while blocking the whole instance
//! until it holds a lock of the instance's MySQL state. An open holds that lock through
//! connect and login, and a statement waiting for it behind an open is handed it while it
//! cannot run; either way the close waits forever and the instance hangs with its
//! connections open. Statements take the lock only for an instant, never across a wait, so
//! only an open in flight makes a close unsafe. Hence:
//! - a connection is closed only at a moment when no open of this instance is in flight
//!   (the guest is single-threaded: nothing can start between the check and the close);
//! - a connection released during an open is kept: a clean one serves the next request of
//!   this instance without a new connect, one that may carry state (a failed call, an
//!   unfinished transaction) waits to be closed; all of them are closed once the opens are
//!   done, so an idle instance holds no connection;
//! - an instance holds at most [`MAX_CONNECTIONS`]; a request past that waits for one its
//!   instance releases. This, not Spin's `max_connections` runtime setting, bounds what a
//!   burst opens: an open waiting on that setting is an open in flight, so its instance
//!   could not close what it keeps, and with every instance waiting so, none would ever
//!   free a slot.

use std::cell::RefCell;
use std::time::Duration;

use spin_sdk::mysql::{Connection, Error};

/// Connections one instance holds at most (in use, opening or kept). Spin serves up to 16
/// requests at once per instance, so a burst of 1,000 requests over about 63 instances
/// opens at most about 130. Not more: a host that pools connections (edge, 64) lends them
/// to instances, and a kept connection is not in the pool while its instance waits for
/// one there; 200 fans holding and paying at once starved edge's pool with 4.
const MAX_CONNECTIONS: usize = 2;

/// How long a request waiting for a connection sleeps before it looks again, first and at
/// most. Guest tasks cannot wake each other, so waiting is polling; backing off keeps a
/// crowd of waiters from spending the instance's time on wake-ups.
const FIRST_POLL: Duration = Duration::from_millis(1);
const LONGEST_POLL: Duration = Duration::from_millis(16);

thread_local! {
    static INSTANCE: RefCell<Kept> = const { RefCell::new(Kept::new()) };
}

/// The connections this instance has released but not closed, and its opens in flight.
struct Kept {
    opens_in_flight: usize,
    /// Open, opening or kept.
    connections: usize,
    reusable: Vec<(String, Connection)>,
    to_close: Vec<Connection>,
}

impl Kept {
    const fn new() -> Self {
        Self {
            opens_in_flight: 0,
            connections: 0,
            reusable: Vec::new(),
            to_close: Vec::new(),
        }
    }

    /// Everything kept, to close, if no open is in flight.
    fn take_if_safe(&mut self) -> Vec<Connection> {
        if self.opens_in_flight > 0 {
            return Vec::new();
        }
        let mut closing = std::mem::take(&mut self.to_close);
        closing.extend(self.reusable.drain(..).map(|(_, connection)| connection));
        self.connections -= closing.len();
        closing
    }

    fn reuse(&mut self, address: &str) -> Option<Connection> {
        let index = self
            .reusable
            .iter()
            .position(|(kept_for, _)| kept_for == address)?;
        Some(self.reusable.swap_remove(index).1)
    }
}

/// One open of this instance in flight, counted for as long as it lives (an open whose
/// request goes away ends with it), with its place among the instance's connections,
/// given back unless the open succeeds.
struct Opening {
    opened: bool,
}

impl Opening {
    fn start() -> Self {
        INSTANCE.with_borrow_mut(|kept| kept.opens_in_flight += 1);
        Self { opened: false }
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        let closing = INSTANCE.with_borrow_mut(|kept| {
            kept.opens_in_flight -= 1;
            if !self.opened {
                kept.connections -= 1;
            }
            kept.take_if_safe()
        });
        // Dropped outside the borrow: each drop is a host call.
        drop(closing);
    }
}

/// A connection to `address`, and whether it is new: one this instance released clean if
/// there is one, else a new one if the instance holds fewer than [`MAX_CONNECTIONS`], else
/// the first of either once there is.
pub(crate) async fn connect(address: &str) -> Result<(Connection, bool), Error> {
    let mut poll = FIRST_POLL;
    loop {
        let may_open = INSTANCE.with_borrow_mut(|kept| {
            if let Some(connection) = kept.reuse(address) {
                return Err(connection);
            }
            let may_open = kept.connections < MAX_CONNECTIONS;
            kept.connections += usize::from(may_open);
            Ok(may_open)
        });
        match may_open {
            Err(reused) => return Ok((reused, false)),
            Ok(true) => {
                let mut opening = Opening::start();
                let connection = Connection::open(address).await?;
                opening.opened = true;
                return Ok((connection, true));
            }
            Ok(false) => {
                spin_sdk::time::sleep(poll).await;
                poll = (poll * 2).min(LONGEST_POLL);
            }
        }
    }
}

/// Releases a connection: closed now if no open is in flight, kept otherwise (for reuse
/// when `clean`, else until it can be closed).
pub(crate) fn release(address: String, connection: Connection, clean: bool) {
    let closing = INSTANCE.with_borrow_mut(|kept| {
        if clean {
            kept.reusable.push((address, connection));
        } else {
            kept.to_close.push(connection);
        }
        kept.take_if_safe()
    });
    drop(closing);
}
