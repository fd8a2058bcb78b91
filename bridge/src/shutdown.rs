//! One shutdown signal for every loop of the bridge.

use std::time::Duration;

use tokio::sync::watch;

/// Cloned into every task; resolves once the bridge is asked to stop.
#[derive(Clone, Debug)]
pub(crate) struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub(crate) fn new() -> (watch::Sender<bool>, Self) {
        let (sender, receiver) = watch::channel(false);
        (sender, Self(receiver))
    }

    pub(crate) fn requested(&self) -> bool {
        *self.0.borrow()
    }

    pub(crate) async fn wait(&mut self) {
        // An error means the sender is gone, which is a stop too.
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Sleeps for `duration`; returns false if shutdown came first.
    pub(crate) async fn sleep(&mut self, duration: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            () = self.wait() => false,
        }
    }
}

/// Doubling pauses after consecutive failures, from 100 ms up to a ceiling.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);

    pub(crate) fn new(max: Duration) -> Self {
        Self {
            next: Self::FIRST,
            max,
        }
    }

    /// The pause before the next attempt.
    pub(crate) fn failed(&mut self) -> Duration {
        let pause = self.next.min(self.max);
        self.next = (self.next * 2).min(self.max);
        pause
    }

    pub(crate) fn succeeded(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_ceiling_and_resets_on_success() {
        let mut backoff = Backoff::new(Duration::from_millis(350));
        let pauses: Vec<u128> = (0..4).map(|_| backoff.failed().as_millis()).collect();
        assert_eq!(pauses, [100, 200, 350, 350]);
        backoff.succeeded();
        assert_eq!(backoff.failed(), Duration::from_millis(100));
    }
}
