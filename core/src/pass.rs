//! Signed tokens of the waiting room: a *queue ticket* proves a user's place in line, a
//! *pass* proves the user was admitted and may reserve and pay until it expires.
//!
//! A token is `base64url(payload ‖ HMAC-SHA256(key, payload))` without padding, where the
//! payload is `version, kind, queue id, user id, position, issued-at, expires-at` in a fixed
//! binary layout. Verifying needs only the key — no Redis or database round trip — which is
//! what lets every seat and payment request check admission at the edge. The MAC is compared
//! in constant time, and the signature is checked before any claim is trusted, so a forged
//! token is always reported as a bad signature, never as "expired" or "wrong queue".

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{DomainError, ErrorCode};
use crate::ids::{QueueId, UserId};
use crate::queue::Position;
use crate::time::Timestamp;

type HmacSha256 = Hmac<Sha256>;

const FORMAT_VERSION: u8 = 1;
const MAC_LEN: usize = 32;
/// version, kind, queue id length, then four u64 fields.
const FIXED_PAYLOAD_LEN: usize = 3 + 4 * 8;

/// What a token entitles its holder to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// A place in the waiting line; used only to poll status.
    QueueTicket,
    /// Admission: reserve seats and pay.
    Pass,
    /// An entry in a scheduled queue's draw, taken before it opened; its position is the
    /// entry's number. Polls status like a ticket: after the draw the queue finds the
    /// entrant's drawn place by user.
    DrawEntry,
}

impl TokenKind {
    const fn tag(self) -> u8 {
        match self {
            TokenKind::QueueTicket => 1,
            TokenKind::Pass => 2,
            TokenKind::DrawEntry => 3,
        }
    }

    const fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(TokenKind::QueueTicket),
            2 => Some(TokenKind::Pass),
            3 => Some(TokenKind::DrawEntry),
            _ => None,
        }
    }
}

/// The signed content of a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub kind: TokenKind,
    pub queue_id: QueueId,
    pub user_id: UserId,
    pub position: Position,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
}

impl Claims {
    /// How long a queue ticket stays valid: longer than any wait, short enough that a leaked
    /// ticket lapses by the next sale.
    pub const TICKET_TTL: Duration = Duration::from_secs(24 * 60 * 60);

    /// The ticket for a place taken at `joined_at`. Deterministic, so a user who joins again
    /// is handed the very same ticket.
    pub fn queue_ticket(
        queue_id: QueueId,
        user_id: UserId,
        position: Position,
        joined_at: Timestamp,
    ) -> Self {
        Self {
            kind: TokenKind::QueueTicket,
            queue_id,
            user_id,
            position,
            issued_at: joined_at,
            expires_at: joined_at.saturating_add(Self::TICKET_TTL),
        }
    }

    /// The entry of a fan who joined a scheduled queue's draw at `joined_at`, as its
    /// `entry`-th entrant. Deterministic like a ticket, and valid for a ticket's lifetime
    /// from the opening, however early the fan came.
    pub fn draw_entry(
        queue_id: QueueId,
        user_id: UserId,
        entry: Position,
        joined_at: Timestamp,
        opens_at: Timestamp,
    ) -> Self {
        Self {
            kind: TokenKind::DrawEntry,
            queue_id,
            user_id,
            position: entry,
            issued_at: joined_at,
            expires_at: opens_at.saturating_add(Self::TICKET_TTL),
        }
    }

    /// The pass for a place admitted at `admitted_at`, valid until `expires_at`.
    pub fn pass(
        queue_id: QueueId,
        user_id: UserId,
        position: Position,
        admitted_at: Timestamp,
        expires_at: Timestamp,
    ) -> Self {
        Self {
            kind: TokenKind::Pass,
            queue_id,
            user_id,
            position,
            issued_at: admitted_at,
            expires_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PassError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token signature is invalid")]
    BadSignature,
    #[error("the token expired")]
    Expired,
    #[error("the token is for another queue")]
    WrongQueue,
    /// Genuine and unexpired, but the queue ended it: its payment completed, or the place
    /// was reset.
    #[error("the pass has been used up; join the queue again")]
    NoLongerActive,
    #[error("a {presented:?} was presented where a {expected:?} is required")]
    WrongKind {
        expected: TokenKind,
        presented: TokenKind,
    },
}

impl DomainError for PassError {
    fn code(&self) -> ErrorCode {
        match self {
            PassError::Malformed => ErrorCode::TokenMalformed,
            PassError::BadSignature => ErrorCode::TokenBadSignature,
            PassError::Expired | PassError::NoLongerActive => ErrorCode::TokenExpired,
            PassError::WrongQueue => ErrorCode::TokenWrongQueue,
            PassError::WrongKind { .. } => ErrorCode::TokenWrongKind,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the pass signing key must be at least {min} bytes", min = PassKey::MIN_LEN)]
pub struct WeakKeyError;

/// The secret that signs and verifies tokens. Its `Debug` output never shows the secret.
#[derive(Clone)]
pub struct PassKey {
    mac: HmacSha256,
}

impl std::fmt::Debug for PassKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PassKey(<redacted>)")
    }
}

impl PassKey {
    /// 256 bits, the HMAC-SHA256 block-strength recommendation.
    pub const MIN_LEN: usize = 32;

    pub fn new(secret: &[u8]) -> Result<Self, WeakKeyError> {
        if secret.len() < Self::MIN_LEN {
            return Err(WeakKeyError);
        }
        let mac = HmacSha256::new_from_slice(secret).map_err(|_| WeakKeyError)?;
        Ok(Self { mac })
    }

    /// Encodes and signs `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        let mut bytes = encode_payload(claims);
        let mut mac = self.mac.clone();
        mac.update(&bytes);
        bytes.extend_from_slice(&mac.finalize().into_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Verifies a token of `kind` for `queue_id` at `now`. Checks, in order: decodable,
    /// signature, kind, queue, expiry.
    pub fn verify(
        &self,
        token: &str,
        kind: TokenKind,
        queue_id: &QueueId,
        now: Timestamp,
    ) -> Result<Claims, PassError> {
        let claims = self.verify_signature(token)?;
        check_kind(&claims, kind)?;
        if &claims.queue_id != queue_id {
            return Err(PassError::WrongQueue);
        }
        check_expiry(&claims, now)?;
        Ok(claims)
    }

    /// Verifies a token of `kind` whose queue the caller learns from the token itself.
    pub fn verify_any_queue(
        &self,
        token: &str,
        kind: TokenKind,
        now: Timestamp,
    ) -> Result<Claims, PassError> {
        let claims = self.verify_signature(token)?;
        check_kind(&claims, kind)?;
        check_expiry(&claims, now)?;
        Ok(claims)
    }

    /// Verifies a token that polls a queue's status: a queue ticket, or a draw entry of a
    /// scheduled queue (whose place the queue finds by user once the draw ran).
    pub fn verify_waiting(&self, token: &str, now: Timestamp) -> Result<Claims, PassError> {
        let claims = self.verify_signature(token)?;
        if claims.kind != TokenKind::DrawEntry {
            check_kind(&claims, TokenKind::QueueTicket)?;
        }
        check_expiry(&claims, now)?;
        Ok(claims)
    }

    /// Verifies any token of ours that has not expired, for an operation whose rule
    /// depends on the kind presented (paying: a pass, or a ticket for a waitlist offer).
    pub fn verify_any_kind(&self, token: &str, now: Timestamp) -> Result<Claims, PassError> {
        let claims = self.verify_signature(token)?;
        check_expiry(&claims, now)?;
        Ok(claims)
    }

    /// Checks encoding and signature only, for callers that learn the queue from the token.
    pub fn verify_signature(&self, token: &str) -> Result<Claims, PassError> {
        // Longer than any token we issue: refuse before allocating for a huge header.
        if token.len() > 256 {
            return Err(PassError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| PassError::Malformed)?;
        let split = bytes
            .len()
            .checked_sub(MAC_LEN)
            .ok_or(PassError::Malformed)?;
        let (payload, signature) = bytes.split_at(split);
        let mut mac = self.mac.clone();
        mac.update(payload);
        mac.verify_slice(signature)
            .map_err(|_| PassError::BadSignature)?;
        decode_payload(payload).ok_or(PassError::Malformed)
    }
}

fn check_kind(claims: &Claims, kind: TokenKind) -> Result<(), PassError> {
    if claims.kind == kind {
        Ok(())
    } else {
        Err(PassError::WrongKind {
            expected: kind,
            presented: claims.kind,
        })
    }
}

fn check_expiry(claims: &Claims, now: Timestamp) -> Result<(), PassError> {
    if now < claims.expires_at {
        Ok(())
    } else {
        Err(PassError::Expired)
    }
}

fn encode_payload(claims: &Claims) -> Vec<u8> {
    let queue = claims.queue_id.as_str().as_bytes();
    let mut bytes = Vec::with_capacity(FIXED_PAYLOAD_LEN + queue.len() + MAC_LEN);
    bytes.push(FORMAT_VERSION);
    bytes.push(claims.kind.tag());
    // QueueId is at most 48 bytes, so its length fits a byte.
    bytes.push(queue.len() as u8);
    bytes.extend_from_slice(queue);
    for field in [
        claims.user_id.get(),
        claims.position.get(),
        claims.issued_at.unix_millis(),
        claims.expires_at.unix_millis(),
    ] {
        bytes.extend_from_slice(&field.to_be_bytes());
    }
    bytes
}

fn decode_payload(payload: &[u8]) -> Option<Claims> {
    let (&[version, tag, queue_len], rest) = payload.split_first_chunk::<3>()?;
    if version != FORMAT_VERSION || rest.len() != usize::from(queue_len) + 32 {
        return None;
    }
    let (queue, numbers) = rest.split_at(usize::from(queue_len));
    let mut fields = numbers
        .chunks_exact(8)
        .map(|chunk| u64::from_be_bytes(chunk.try_into().unwrap_or_default()));
    let mut next = || fields.next();
    Some(Claims {
        kind: TokenKind::from_tag(tag)?,
        queue_id: QueueId::parse(std::str::from_utf8(queue).ok()?).ok()?,
        user_id: UserId::new(next()?).ok()?,
        position: Position::new(next()?)?,
        issued_at: Timestamp::from_unix_millis(next()?),
        expires_at: Timestamp::from_unix_millis(next()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: Timestamp = Timestamp::from_unix_millis(1_795_000_000_000);

    fn key() -> PassKey {
        PassKey::new(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    fn claims(kind: TokenKind) -> Claims {
        Claims {
            kind,
            queue_id: QueueId::default(),
            user_id: UserId::new(42).unwrap(),
            position: Position::new(7).unwrap(),
            issued_at: NOW,
            expires_at: NOW.saturating_add(std::time::Duration::from_secs(600)),
        }
    }

    fn verify(token: &str) -> Result<Claims, PassError> {
        key().verify(token, TokenKind::Pass, &QueueId::default(), NOW)
    }

    #[test]
    fn a_draw_entry_polls_status_like_a_ticket_until_a_day_after_the_opening() {
        let opens_at = NOW.saturating_add(Duration::from_secs(3_600));
        let entry = Claims::draw_entry(
            QueueId::default(),
            UserId::new(9).unwrap(),
            Position::new(3).unwrap(),
            NOW,
            opens_at,
        );
        let token = key().sign(&entry);
        assert_eq!(key().verify_waiting(&token, NOW), Ok(entry.clone()));
        assert_eq!(
            key().verify_waiting(&token, opens_at.saturating_add(Claims::TICKET_TTL)),
            Err(PassError::Expired)
        );
        assert!(matches!(
            key().verify_any_queue(&token, TokenKind::Pass, NOW),
            Err(PassError::WrongKind { .. })
        ));
        let ticket = key().sign(&claims(TokenKind::QueueTicket));
        assert!(key().verify_waiting(&ticket, NOW).is_ok());
    }

    #[test]
    fn joining_again_yields_the_very_same_ticket() {
        let ticket = || {
            Claims::queue_ticket(
                QueueId::default(),
                UserId::new(42).unwrap(),
                Position::new(7).unwrap(),
                NOW,
            )
        };
        assert_eq!(key().sign(&ticket()), key().sign(&ticket()));
        assert_eq!(ticket().expires_at, NOW.saturating_add(Claims::TICKET_TTL));
    }

    #[test]
    fn a_token_verifies_for_the_queue_it_names_but_still_checks_kind_and_expiry() {
        let mut ticket = claims(TokenKind::QueueTicket);
        ticket.queue_id = QueueId::parse("concert-7").unwrap();
        let token = key().sign(&ticket);
        assert_eq!(
            key().verify_any_queue(&token, TokenKind::QueueTicket, NOW),
            Ok(ticket.clone())
        );
        assert!(matches!(
            key().verify_any_queue(&token, TokenKind::Pass, NOW),
            Err(PassError::WrongKind { .. })
        ));
        assert_eq!(
            key().verify_any_queue(&token, TokenKind::QueueTicket, ticket.expires_at),
            Err(PassError::Expired)
        );
    }

    #[test]
    fn a_signed_pass_verifies_and_gives_back_its_claims() {
        let token = key().sign(&claims(TokenKind::Pass));
        assert!(matches!(
            key().verify_waiting(&token, NOW),
            Err(PassError::WrongKind {
                expected: TokenKind::QueueTicket,
                presented: TokenKind::Pass
            })
        ));
        assert_eq!(verify(&token), Ok(claims(TokenKind::Pass)));
    }

    #[test]
    fn a_pass_is_compact_and_url_safe() {
        let token = key().sign(&claims(TokenKind::Pass));
        assert!(token.len() <= 100, "{} characters", token.len());
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }

    #[test]
    fn a_pass_is_refused_from_its_expiry_instant_on() {
        let pass = claims(TokenKind::Pass);
        let token = key().sign(&pass);
        let at = |t| key().verify(&token, TokenKind::Pass, &QueueId::default(), t);
        assert!(
            at(pass
                .expires_at
                .saturating_sub(std::time::Duration::from_millis(1)))
            .is_ok()
        );
        assert_eq!(at(pass.expires_at), Err(PassError::Expired));
    }

    #[test]
    fn a_pass_for_another_queue_is_refused_as_wrong_queue() {
        let token = key().sign(&claims(TokenKind::Pass));
        let other = QueueId::parse("other").unwrap();
        assert_eq!(
            key().verify(&token, TokenKind::Pass, &other, NOW),
            Err(PassError::WrongQueue)
        );
    }

    #[test]
    fn a_queue_ticket_cannot_be_used_as_a_pass() {
        let token = key().sign(&claims(TokenKind::QueueTicket));
        assert!(matches!(verify(&token), Err(PassError::WrongKind { .. })));
    }

    #[test]
    fn a_pass_signed_with_another_key_has_a_bad_signature() {
        let other = PassKey::new(&[7u8; 32]).unwrap();
        let token = other.sign(&claims(TokenKind::Pass));
        assert_eq!(verify(&token), Err(PassError::BadSignature));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for bad in [
            "",
            "a",
            "!!!!",
            "AAAA",
            &"A".repeat(300),
            "eyJhbGciOiJIUzI1NiJ9.e30.x",
        ] {
            assert_eq!(verify(bad), Err(PassError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn a_forged_expiry_is_a_bad_signature_not_a_longer_pass() {
        let token = key().sign(&claims(TokenKind::Pass));
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        let expiry_offset = 3 + "default".len() + 24;
        bytes[expiry_offset] ^= 0x01;
        assert_eq!(
            verify(&URL_SAFE_NO_PAD.encode(bytes)),
            Err(PassError::BadSignature)
        );
    }

    #[test]
    fn short_keys_are_refused_and_keys_never_print() {
        assert_eq!(PassKey::new(b"short").unwrap_err(), WeakKeyError);
        assert_eq!(format!("{:?}", key()), "PassKey(<redacted>)");
    }

    #[test]
    fn token_errors_map_to_401_or_403() {
        let status = |e: PassError| crate::ApiError::from(e).http_status();
        assert_eq!(status(PassError::Malformed), 401);
        assert_eq!(status(PassError::BadSignature), 401);
        assert_eq!(status(PassError::Expired), 401);
        assert_eq!(status(PassError::WrongQueue), 403);
    }

    proptest! {
        /// Every single-character change to an encoded pass — any position, any replacement
        /// byte — is refused.
        #[test]
        fn pass_verification_rejects_every_single_byte_tampering(
            index in any::<prop::sample::Index>(),
            replacement in any::<u8>(),
        ) {
            let token = key().sign(&claims(TokenKind::Pass));
            let mut bytes = token.clone().into_bytes();
            let i = index.index(bytes.len());
            prop_assume!(bytes[i] != replacement);
            bytes[i] = replacement;
            let tampered = String::from_utf8_lossy(&bytes);
            prop_assert!(verify(&tampered).is_err());
        }

        /// The same for the decoded bytes: flipping any bits of any byte of the payload or
        /// MAC gives a bad signature.
        #[test]
        fn flipping_bits_of_any_decoded_byte_is_a_bad_signature(
            index in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let token = key().sign(&claims(TokenKind::Pass));
            let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
            let i = index.index(bytes.len());
            bytes[i] ^= flip;
            prop_assert_eq!(verify(&URL_SAFE_NO_PAD.encode(bytes)), Err(PassError::BadSignature));
        }

        #[test]
        fn any_claims_survive_signing_and_verification(
            user in 1u64..=crate::ids::MAX_NUMERIC_ID,
            position in 1u64..=u64::MAX / 2,
            issued in 0u64..4_000_000_000_000,
            ttl in 1u64..86_400_000,
        ) {
            let claims = Claims {
                kind: TokenKind::Pass,
                queue_id: QueueId::parse("q-1").unwrap(),
                user_id: UserId::new(user).unwrap(),
                position: Position::new(position).unwrap(),
                issued_at: Timestamp::from_unix_millis(issued),
                expires_at: Timestamp::from_unix_millis(issued + ttl),
            };
            let token = key().sign(&claims);
            prop_assert_eq!(key().verify_signature(&token), Ok(claims));
        }
    }
}
