//! When this instance may open and close a MySQL connection, and what it does with one it
//! may not close yet.
//!
//! Spin 4.1 closes a connection (the resource's drop) while blocking the whole instance and
//! waiting for a lock that every MySQL call of the instance takes, and holds that lock for
//! all of an open (connect and login); a call still in flight can then never finish, and
//! the instance hangs with its connections open. So:
//! - a connection is closed only at a moment when no MySQL call of this instance is in
//!   flight (the guest is single-threaded: nothing can start between the check and the
//!   close);
//! - a connection released while others are busy is kept: a clean one serves the next
//!   request of this instance without a new connect, one that may carry state (a failed
//!   call, an unfinished transaction) waits to be closed; everything kept is closed as soon
//!   as the instance's MySQL calls are all done, so an idle instance holds no connection;
//! - an instance holds at most [`MAX_CONNECTIONS`]; a request past that waits for one its
//!   instance releases. This, not Spin's `max_connections` runtime setting, bounds what a
//!   burst opens: an open waiting on that setting counts as a call in flight, so its
//!   instance could never close what it keeps, and with every instance waiting so, none
//!   would ever free a slot.

use std::cell::RefCell;
use std::time::Duration;

use spin_sdk::mysql::{Connection, Error};

/// Connections one instance holds at most (in use, opening or kept). Spin serves up to 16
/// requests at once per instance; with 4 connections, a burst of 1,000 requests over about
/// 63 instances opens at most about 250.
const MAX_CONNECTIONS: usize = 2;

/// How often a request waiting for a connection looks again. Guest tasks cannot wake each
/// other, so waiting is polling.
const POLL: Duration = Duration::from_millis(1);

thread_local! {
    static INSTANCE: RefCell<Kept> = const { RefCell::new(Kept::new()) };
}

/// The connections this instance has released but not closed, and its calls in flight.
struct Kept {
    calls_in_flight: usize,
    /// Open, opening or kept.
    connections: usize,
    reusable: Vec<(String, Connection)>,
    to_close: Vec<Connection>,
}

impl Kept {
    const fn new() -> Self {
        Self {
            calls_in_flight: 0,
            connections: 0,
            reusable: Vec::new(),
            to_close: Vec::new(),
        }
    }

    /// Everything kept, to close, if no call is in flight.
    fn take_if_quiet(&mut self) -> Vec<Connection> {
        if self.calls_in_flight > 0 {
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

/// Marks one MySQL call of this instance as in flight for as long as it lives (a call
/// whose request is cancelled ends with it).
pub(crate) struct CallInFlight(());

impl CallInFlight {
    pub(crate) fn start() -> Self {
        INSTANCE.with_borrow_mut(|kept| kept.calls_in_flight += 1);
        Self(())
    }
}

impl Drop for CallInFlight {
    fn drop(&mut self) {
        let closing = INSTANCE.with_borrow_mut(|kept| {
            kept.calls_in_flight -= 1;
            kept.take_if_quiet()
        });
        // Dropped outside the borrow: each drop is a host call.
        drop(closing);
    }
}

/// A place counted for a connection being opened; given back if the open fails or its
/// request goes away, kept (forgotten) once the connection exists.
struct Slot(());

impl Drop for Slot {
    fn drop(&mut self) {
        INSTANCE.with_borrow_mut(|kept| kept.connections -= 1);
    }
}

/// A connection to `address`, and whether it is new: one this instance released clean if
/// there is one, else a new one if the instance holds fewer than [`MAX_CONNECTIONS`], else
/// the first of either once there is.
pub(crate) async fn connect(address: &str) -> Result<(Connection, bool), Error> {
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
                let slot = Slot(());
                let opened = {
                    let _call = CallInFlight::start();
                    Connection::open(address).await?
                };
                std::mem::forget(slot);
                return Ok((opened, true));
            }
            Ok(false) => spin_sdk::time::sleep(POLL).await,
        }
    }
}

/// Releases a connection: closed now if no call is in flight, kept otherwise (for reuse
/// when `clean`, else until it can be closed).
pub(crate) fn release(address: String, connection: Connection, clean: bool) {
    let closing = INSTANCE.with_borrow_mut(|kept| {
        if clean {
            kept.reusable.push((address, connection));
        } else {
            kept.to_close.push(connection);
        }
        kept.take_if_quiet()
    });
    drop(closing);
}
