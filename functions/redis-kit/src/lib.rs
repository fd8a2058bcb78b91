//! A component instance's Redis connection, kept across the requests the instance serves
//! (Spin reuses an instance for up to 128 of them, 16 at once). Every Spin interface call
//! is a component-model async call: opening a connection and dropping it again per request
//! made two of a queue join's three Redis calls. A failed command forgets the connection,
//! so the next request opens a new one rather than the instance keeping a dead one for
//! the rest of its life.

use std::cell::RefCell;
use std::rc::Rc;

use spin_sdk::redis::{Connection, Error, RedisParameter, RedisResult};

thread_local! {
    /// The kept connection and the address it was opened for. A component instance runs
    /// on one thread, so this is the instance's.
    static KEPT: RefCell<Option<(String, Rc<Connection>)>> = const { RefCell::new(None) };
}

/// The instance's connection to `address`, opened on first use. Its commands are the
/// only way to it, so none can fail without the connection being forgotten.
pub struct KeptConnection(Rc<Connection>);

impl std::fmt::Debug for KeptConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeptConnection")
    }
}

impl KeptConnection {
    pub async fn open(address: &str) -> Result<Self, Error> {
        let kept = KEPT.with_borrow(|kept| match kept {
            Some((opened_for, connection)) if opened_for == address => Some(connection.clone()),
            _ => None,
        });
        if let Some(connection) = kept {
            return Ok(Self(connection));
        }
        let connection = Rc::new(Connection::open(address).await?);
        KEPT.set(Some((address.to_owned(), connection.clone())));
        Ok(Self(connection))
    }

    pub async fn execute(
        &self,
        command: &str,
        arguments: impl IntoIterator<Item = RedisParameter>,
    ) -> Result<Vec<RedisResult>, Error> {
        self.kept(self.0.execute(command, arguments).await)
    }

    pub async fn del(&self, keys: impl IntoIterator<Item = String>) -> Result<u32, Error> {
        self.kept(self.0.del(keys).await)
    }

    pub async fn incr(&self, key: &str) -> Result<i64, Error> {
        self.kept(self.0.incr(key).await)
    }

    /// A command's result; after a failure the next request opens a new connection
    /// (unless another request already replaced this one).
    fn kept<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        if result.is_err() {
            KEPT.with_borrow_mut(|kept| {
                if kept
                    .as_ref()
                    .is_some_and(|(_, connection)| Rc::ptr_eq(connection, &self.0))
                {
                    *kept = None;
                }
            });
        }
        result
    }
}
