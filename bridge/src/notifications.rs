//! The notification consumer: records each `notification.request` in the notifications
//! table, the stand-in for a mail or push sender, exactly once per event.

use ticketing_core::events::{Envelope, NotificationRequest, Topic};

use crate::consumer::{Effect, Tally};
use crate::store::{ReceivedNotification, Store};

pub(crate) struct Notifications {
    store: Store,
}

impl Notifications {
    pub(crate) fn new(store: Store) -> Self {
        Self { store }
    }
}

impl Effect for Notifications {
    fn name(&self) -> &'static str {
        "notifications"
    }

    fn topics(&self) -> &'static [Topic] {
        &[Topic::NotificationRequest]
    }

    async fn apply(&self, events: &[Envelope]) -> anyhow::Result<Tally> {
        let mut received = Vec::with_capacity(events.len());
        let mut rejected = 0;
        for envelope in events {
            match envelope.decode::<NotificationRequest>() {
                Ok(request) => received.push(ReceivedNotification {
                    event_id: envelope.event_id,
                    requested_at: envelope.occurred_at,
                    request,
                }),
                Err(error) => {
                    tracing::warn!(event = %envelope.event_id, %error, "skipping an undecodable notification request");
                    rejected += 1;
                }
            }
        }
        let recorded = self
            .store
            .record_notifications(self.name(), &received)
            .await?;
        Ok(Tally {
            applied: recorded.applied,
            duplicates: recorded.duplicates,
            rejected,
        })
    }
}
