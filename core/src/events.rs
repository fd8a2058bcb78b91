//! Domain events and the one envelope they travel in.
//!
//! Components write events to the MySQL outbox in the same transaction as the change they
//! describe; the bridge relays them to Kafka. Consumers deduplicate by `event_id`, so an
//! event delivered twice has one effect. The envelope is plain JSON:
//! `{ "event_id", "type", "version", "occurred_at", "key", "payload" }`.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::ids::{ConcertId, PaymentId, ReservationId, ScheduleId, SeatId, UserId};
use crate::money::Amount;
use crate::time::Timestamp;

/// Kafka topics. The key of every message is the entity whose events must stay in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    PaymentCompleted,
    PaymentRefunded,
    ReservationHeld,
    ReservationReleased,
    ReservationExpired,
    NotificationRequest,
    WaitlistOffered,
}

impl Topic {
    pub const ALL: [Topic; 7] = [
        Topic::PaymentCompleted,
        Topic::PaymentRefunded,
        Topic::ReservationHeld,
        Topic::ReservationReleased,
        Topic::ReservationExpired,
        Topic::NotificationRequest,
        Topic::WaitlistOffered,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Topic::PaymentCompleted => "payment.completed",
            Topic::PaymentRefunded => "payment.refunded",
            Topic::ReservationHeld => "reservation.held",
            Topic::ReservationReleased => "reservation.released",
            Topic::ReservationExpired => "reservation.expired",
            Topic::NotificationRequest => "notification.request",
            Topic::WaitlistOffered => "waitlist.offered",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds then random bits, so ids sort by
/// creation time (good for B-tree inserts and log reading) and never collide in practice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId([u8; 16]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an event id must be a UUIDv7 in hyphenated form")]
pub struct EventIdError;

impl EventId {
    /// `random` supplies the 74 random bits (the version and variant bits are overwritten).
    pub fn new(at: Timestamp, random: [u8; 10]) -> Self {
        let mut bytes = [0u8; 16];
        bytes[..6].copy_from_slice(&at.unix_millis().to_be_bytes()[2..]);
        bytes[6..].copy_from_slice(&random);
        bytes[6] = 0x70 | (bytes[6] & 0x0f);
        bytes[8] = 0x80 | (bytes[8] & 0x3f);
        Self(bytes)
    }

    /// The creation instant encoded in the id.
    pub fn timestamp(&self) -> Timestamp {
        let mut millis = [0u8; 8];
        millis[2..].copy_from_slice(&self.0[..6]);
        Timestamp::from_unix_millis(u64::from_be_bytes(millis))
    }

    pub fn parse(text: &str) -> Result<Self, EventIdError> {
        let bytes = text.as_bytes();
        let hyphens_ok = bytes.len() == 36 && [8, 13, 18, 23].iter().all(|&i| bytes[i] == b'-');
        if !hyphens_ok {
            return Err(EventIdError);
        }
        let hex: Vec<u8> = bytes.iter().copied().filter(|&b| b != b'-').collect();
        let mut id = [0u8; 16];
        for (slot, pair) in id.iter_mut().zip(hex.chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| EventIdError)?;
            *slot = u8::from_str_radix(pair, 16).map_err(|_| EventIdError)?;
        }
        let is_v7 = id[6] >> 4 == 7 && id[8] >> 6 == 0b10;
        if hex.len() != 32 || !is_v7 {
            return Err(EventIdError);
        }
        Ok(Self(id))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        EventId::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A domain event payload: its type name, schema version, topic and ordering key.
pub trait Event: Serialize + DeserializeOwned {
    const TYPE: &'static str;
    const VERSION: u16;
    const TOPIC: Topic;
    /// Messages with the same key keep their order in Kafka.
    fn key(&self) -> String;
}

/// The envelope as stored in the outbox and published to Kafka.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub event_id: EventId,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: u16,
    pub occurred_at: Timestamp,
    pub key: String,
    pub payload: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("expected a {expected} event, got {found}")]
    WrongType {
        expected: &'static str,
        found: String,
    },
    #[error("{event_type} version {found} is not supported (expected {expected})")]
    UnsupportedVersion {
        event_type: &'static str,
        expected: u16,
        found: u16,
    },
    #[error("invalid event JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl Envelope {
    pub fn wrap<E: Event>(
        event: &E,
        event_id: EventId,
        occurred_at: Timestamp,
    ) -> Result<Self, EnvelopeError> {
        Ok(Self {
            event_id,
            event_type: E::TYPE.to_owned(),
            version: E::VERSION,
            occurred_at,
            key: event.key(),
            payload: serde_json::to_value(event)?,
        })
    }

    /// The topic the event is published to, if its type is known.
    pub fn topic(&self) -> Option<Topic> {
        Topic::parse(&self.event_type)
    }

    pub fn to_json(&self) -> Result<String, EnvelopeError> {
        Ok(serde_json::to_string(self)?)
    }

    pub fn from_json(json: &[u8]) -> Result<Self, EnvelopeError> {
        Ok(serde_json::from_slice(json)?)
    }

    /// The typed payload, after checking type and version.
    pub fn decode<E: Event>(&self) -> Result<E, EnvelopeError> {
        if self.event_type != E::TYPE {
            return Err(EnvelopeError::WrongType {
                expected: E::TYPE,
                found: self.event_type.clone(),
            });
        }
        if self.version != E::VERSION {
            return Err(EnvelopeError::UnsupportedVersion {
                event_type: E::TYPE,
                expected: E::VERSION,
                found: self.version,
            });
        }
        Ok(E::deserialize(&self.payload)?)
    }
}

/// Implements [`Event`] for a payload type. Each event type has its own topic, so the type
/// name is the topic name; `$key` is the expression (over `self`) that orders its messages.
macro_rules! impl_event {
    ($name:ident, $topic:ident, |$this:ident| $key:expr) => {
        impl Event for $name {
            const TYPE: &'static str = Topic::$topic.name();
            const VERSION: u16 = 1;
            const TOPIC: Topic = Topic::$topic;
            fn key(&$this) -> String {
                $key.to_string()
            }
        }
    };
}

/// Defines an event payload struct with camelCase JSON and its [`Event`] impl.
macro_rules! event {
    ($(#[$meta:meta])* $name:ident, $topic:ident, key = $key:ident, { $($field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            $(pub $field: $ty),*
        }

        impl_event!($name, $topic, |self| self.$key);
    };
}

event!(
    /// Seats were held; the hold lapses at `expires_at` unless paid.
    ReservationHeld, ReservationHeld, key = reservation_id, {
        reservation_id: ReservationId,
        user_id: UserId,
        schedule_id: ScheduleId,
        seat_ids: Vec<SeatId>,
        amount: Amount,
        expires_at: Timestamp,
    }
);

event!(
    /// The holder cancelled; the seats are on sale again.
    ReservationReleased, ReservationReleased, key = reservation_id, {
        reservation_id: ReservationId,
        user_id: UserId,
        schedule_id: ScheduleId,
        seat_ids: Vec<SeatId>,
    }
);

event!(
    /// The hold lapsed unpaid; the seats are on sale again.
    ReservationExpired, ReservationExpired, key = reservation_id, {
        reservation_id: ReservationId,
        user_id: UserId,
        schedule_id: ScheduleId,
        seat_ids: Vec<SeatId>,
    }
);

event!(
    /// A seat that came back was offered to the first fan on a sold-out concert's waitlist,
    /// as a hold of the fan's that lapses at `expires_at` unless paid.
    WaitlistOffered, WaitlistOffered, key = reservation_id, {
        reservation_id: ReservationId,
        user_id: UserId,
        concert_id: ConcertId,
        schedule_id: ScheduleId,
        seat_ids: Vec<SeatId>,
        amount: Amount,
        expires_at: Timestamp,
    }
);

/// The facts of one settled payment, shared by its completion and its refund so that a
/// consumer (the ranking) can undo exactly what it did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentFacts {
    pub payment_id: PaymentId,
    pub reservation_id: ReservationId,
    pub user_id: UserId,
    pub concert_id: ConcertId,
    pub schedule_id: ScheduleId,
    pub seat_ids: Vec<SeatId>,
    pub amount: Amount,
}

/// Money was debited and the seats sold. Drives the popularity ranking.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PaymentCompleted(pub PaymentFacts);
impl_event!(PaymentCompleted, PaymentCompleted, |self| self
    .0
    .reservation_id);

/// Money was credited back and the seats returned to sale.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PaymentRefunded(pub PaymentFacts);
impl_event!(PaymentRefunded, PaymentRefunded, |self| self
    .0
    .reservation_id);

/// What a notification tells the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NotificationKind {
    PaymentCompleted,
    PaymentRefunded,
    ReservationExpired,
    WaitlistOffered,
}

event!(
    /// Ask the notification sender to tell a user something about a reservation.
    NotificationRequest, NotificationRequest, key = user_id, {
        user_id: UserId,
        kind: NotificationKind,
        reservation_id: ReservationId,
        payment_id: Option<PaymentId>,
    }
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: Timestamp = Timestamp::from_unix_millis(1_795_264_496_789);

    fn completed() -> PaymentCompleted {
        PaymentCompleted(PaymentFacts {
            payment_id: PaymentId::new(9).unwrap(),
            reservation_id: ReservationId::new(5).unwrap(),
            user_id: UserId::new(42).unwrap(),
            concert_id: ConcertId::new(1).unwrap(),
            schedule_id: ScheduleId::new(101).unwrap(),
            seat_ids: vec![SeatId::new(1_010_001).unwrap()],
            amount: Amount::new(50_000).unwrap(),
        })
    }

    #[test]
    fn an_envelope_has_the_documented_fields() {
        let id = EventId::new(NOW, [0xab; 10]);
        let envelope = Envelope::wrap(&completed(), id, NOW).unwrap();
        let json: Value = serde_json::from_str(&envelope.to_json().unwrap()).unwrap();
        assert_eq!(json["event_id"], id.to_string());
        assert_eq!(json["type"], "payment.completed");
        assert_eq!(json["version"], 1);
        assert_eq!(json["occurred_at"], "2026-11-21T12:34:56.789Z");
        assert_eq!(json["key"], "5");
        assert_eq!(json["payload"]["seatIds"], serde_json::json!([1_010_001]));
        assert_eq!(envelope.topic(), Some(Topic::PaymentCompleted));
    }

    #[test]
    fn an_envelope_round_trips_and_decodes_to_its_payload() {
        let envelope = Envelope::wrap(&completed(), EventId::new(NOW, [1; 10]), NOW).unwrap();
        let back = Envelope::from_json(envelope.to_json().unwrap().as_bytes()).unwrap();
        assert_eq!(back, envelope);
        assert_eq!(back.decode::<PaymentCompleted>().unwrap(), completed());
    }

    #[test]
    fn decoding_as_the_wrong_type_or_version_fails() {
        let mut envelope = Envelope::wrap(&completed(), EventId::new(NOW, [1; 10]), NOW).unwrap();
        assert!(matches!(
            envelope.decode::<ReservationExpired>(),
            Err(EnvelopeError::WrongType { .. })
        ));
        envelope.version = 2;
        assert!(matches!(
            envelope.decode::<PaymentCompleted>(),
            Err(EnvelopeError::UnsupportedVersion { .. })
        ));
    }

    #[test]
    fn notifications_are_keyed_by_user_and_reservation_events_by_reservation() {
        let notification = NotificationRequest {
            user_id: UserId::new(42).unwrap(),
            kind: NotificationKind::PaymentCompleted,
            reservation_id: ReservationId::new(5).unwrap(),
            payment_id: None,
        };
        assert_eq!(notification.key(), "42");
        assert_eq!(completed().key(), "5");
    }

    #[test]
    fn every_topic_name_parses_back() {
        for topic in Topic::ALL {
            assert_eq!(Topic::parse(topic.name()), Some(topic));
        }
    }

    #[test]
    fn event_ids_are_uuid_v7_text() {
        let id = EventId::new(NOW, [0xff; 10]);
        let text = id.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "7");
        assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"));
        assert_eq!(EventId::parse(&text), Ok(id));
        assert_eq!(id.timestamp(), NOW);
        for bad in [
            "",
            "not-a-uuid",
            "0190f3e4-7a2b-4c3d-8e4f-0123456789ab",
            "0190f3e4x7a2b-7c3d-8e4f-0123456789ab",
        ] {
            assert!(EventId::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn event_ids_sort_by_creation_time(a in 0u64..(1 << 48), b in 0u64..(1 << 48), ra: [u8; 10], rb: [u8; 10]) {
            let ia = EventId::new(Timestamp::from_unix_millis(a), ra);
            let ib = EventId::new(Timestamp::from_unix_millis(b), rb);
            if a < b {
                prop_assert!(ia < ib);
                prop_assert!(ia.to_string() < ib.to_string());
            }
            prop_assert_eq!(EventId::parse(&ia.to_string()), Ok(ia));
        }
    }
}
