//! The on-sale draw: fans who gather before a sale opens are put in line by a random draw
//! that anyone can check afterwards.
//!
//! Refreshing at 09:59:59 must be no advantage, so a queue with an opening time does not
//! hand out positions before it: fans who join early are *entrants*, and at opening they
//! are ordered by the draw, ahead of everyone who arrives later (who line up in arrival
//! order). The draw is commit-and-reveal:
//!
//! 1. When the queue is created it draws a secret 32-byte [`DrawSeed`] and publishes its
//!    [`Commitment`], the SHA-256 of the seed's bytes. The seed cannot be changed after
//!    that without the commitment showing it.
//! 2. At opening it reveals the seed. Each entrant's *draw key* is
//!    `HMAC-SHA256(key = seed, message = the user id in decimal ASCII)`, and the order is
//!    the entrants sorted by draw key (bytes compared in order), ties by user id.
//!
//! So the order is a deterministic function of public data (the seed, once revealed, and
//! the entrants' ids), which the `draw-check` tool recomputes; and before the reveal nobody,
//! operator staff who read only the commitment included, can tell who will come first:
//! HMAC with a secret key is a pseudo-random function.

use std::fmt;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::error::{DomainError, ErrorCode};
use crate::ids::{QueueId, UserId};

type HmacSha256 = Hmac<Sha256>;

/// Bytes in a seed.
pub const SEED_BYTES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be {digits} hexadecimal digits")]
pub struct HexError {
    pub what: &'static str,
    pub digits: usize,
}

impl DomainError for HexError {
    fn code(&self) -> ErrorCode {
        ErrorCode::InvalidField
    }
}

fn parse_hex_32(what: &'static str, text: &str) -> Result<[u8; SEED_BYTES], HexError> {
    let error = HexError {
        what,
        digits: 2 * SEED_BYTES,
    };
    let text = text.trim();
    if text.len() != 2 * SEED_BYTES || !text.is_ascii() {
        return Err(error);
    }
    let mut bytes = [0; SEED_BYTES];
    for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).map_err(|_| error.clone())?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| error.clone())?;
    }
    Ok(bytes)
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
}

/// The secret behind a queue's draw. The adapter supplies the randomness (the core does no
/// I/O); it must come from a cryptographic source, or the draw is predictable.
#[derive(Clone, PartialEq, Eq)]
pub struct DrawSeed([u8; SEED_BYTES]);

impl DrawSeed {
    pub const fn from_bytes(bytes: [u8; SEED_BYTES]) -> Self {
        Self(bytes)
    }

    /// A seed as published at opening: 64 hexadecimal digits.
    pub fn parse_hex(text: &str) -> Result<Self, HexError> {
        parse_hex_32("seed", text).map(Self)
    }

    /// What the queue publishes before the draw.
    pub fn commitment(&self) -> Commitment {
        Commitment(Sha256::digest(self.0).into())
    }

    /// The entrant's draw key: the draw puts smaller keys first.
    pub fn key_of(&self, user: UserId) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(user.get().to_string().as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The entrants in draw order. Duplicates count once: a fan has one place.
    pub fn order(&self, entrants: &[UserId]) -> Vec<UserId> {
        let mut keyed: Vec<([u8; 32], UserId)> = entrants
            .iter()
            .map(|&user| (self.key_of(user), user))
            .collect();
        keyed.sort_unstable();
        keyed.dedup_by_key(|(_, user)| *user);
        keyed.into_iter().map(|(_, user)| user).collect()
    }
}

impl fmt::Display for DrawSeed {
    /// The seed in hexadecimal, as revealed at opening.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for DrawSeed {
    /// Never the seed itself: a log line must not reveal the draw before opening.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DrawSeed(commitment {})", self.commitment())
    }
}

/// The SHA-256 of a seed's 32 bytes, published when the queue is created: with the seed
/// in hand, `echo SEED | xxd -r -p | sha256sum` prints it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Commitment([u8; 32]);

impl Commitment {
    pub fn parse_hex(text: &str) -> Result<Self, HexError> {
        parse_hex_32("commitment", text).map(Self)
    }

    /// Whether `seed` is the one this commitment was made to.
    pub fn is_kept_by(&self, seed: &DrawSeed) -> bool {
        seed.commitment() == *self
    }
}

impl fmt::Display for Commitment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

macro_rules! hex_serde {
    ($name:ident) => {
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::parse_hex(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_serde!(DrawSeed);
hex_serde!(Commitment);

/// A queue's draw as its public endpoint shows it: the commitment from the start, and from
/// opening on the seed and the entrants in the order the queue put them. Nothing in it is
/// secret once the seed is revealed, and it is all `check_draw` needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishedDraw {
    pub queue_id: QueueId,
    pub commitment: Commitment,
    /// `None` until the queue opens.
    pub seed: Option<DrawSeed>,
    /// The entrants in their drawn order; empty until the queue opens.
    pub order: Vec<UserId>,
}

/// Why a published draw does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrawMismatch {
    #[error("the revealed seed does not hash to the published commitment")]
    SeedBreaksCommitment,
    #[error("place {place} went to user {published}, but the draw gives it to user {drawn}")]
    WrongPlace {
        place: usize,
        published: UserId,
        drawn: UserId,
    },
    #[error("{published} places were published for {drawn} entrants")]
    WrongLength { published: usize, drawn: usize },
    #[error("the seed is not revealed yet: the queue has not opened")]
    NotRevealed,
}

impl PublishedDraw {
    /// Checks the published order against the draw, trusting only `commitment`: the one the
    /// checker saw before opening, when it has it, or else the one published here.
    pub fn check(&self, commitment: Option<&Commitment>) -> Result<(), DrawMismatch> {
        let seed = self.seed.as_ref().ok_or(DrawMismatch::NotRevealed)?;
        check_draw(
            commitment.unwrap_or(&self.commitment),
            seed,
            &self.order,
            &self.order,
        )
    }

    /// A fan's 1-based place in the draw, if they entered it.
    pub fn rank_of(&self, user: UserId) -> Option<usize> {
        self.order.iter().position(|&u| u == user).map(|i| i + 1)
    }
}

/// Checks a published draw from public data only: the commitment made before, the seed
/// revealed at opening, the entrants and the order the queue gave them.
pub fn check_draw(
    commitment: &Commitment,
    seed: &DrawSeed,
    entrants: &[UserId],
    published: &[UserId],
) -> Result<(), DrawMismatch> {
    if !commitment.is_kept_by(seed) {
        return Err(DrawMismatch::SeedBreaksCommitment);
    }
    let drawn = seed.order(entrants);
    if let Some((place, (&published, &drawn))) = published
        .iter()
        .zip(&drawn)
        .enumerate()
        .find(|(_, (published, drawn))| published != drawn)
    {
        return Err(DrawMismatch::WrongPlace {
            place: place + 1,
            published,
            drawn,
        });
    }
    if published.len() != drawn.len() {
        return Err(DrawMismatch::WrongLength {
            published: published.len(),
            drawn: drawn.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn users(ids: impl IntoIterator<Item = u64>) -> Vec<UserId> {
        ids.into_iter().map(|id| UserId::new(id).unwrap()).collect()
    }

    fn seed(byte: u8) -> DrawSeed {
        DrawSeed::from_bytes([byte; SEED_BYTES])
    }

    #[test]
    fn the_commitment_is_the_sha256_of_the_seed_bytes() {
        // printf '\0%.0s' {1..32} | sha256sum
        assert_eq!(
            seed(0).commitment().to_string(),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
    }

    #[test]
    fn a_draw_key_is_the_hmac_of_the_decimal_user_id_under_the_seed() {
        // python3 -c 'import hmac; print(hmac.new(bytes(32), b"42", "sha256").hexdigest())'
        let key = seed(0).key_of(UserId::new(42).unwrap());
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "96ce0a5a8208370ab4abd635460c4c9afc94c6e8f2a3d717147a434a5e3f4c9b"
        );
    }

    #[test]
    fn a_seed_reads_back_from_its_hexadecimal_form() {
        let original = DrawSeed::from_bytes(std::array::from_fn(|i| i as u8 * 7));
        let read = DrawSeed::parse_hex(&original.to_string()).unwrap();
        assert_eq!(read, original);
        let commitment = Commitment::parse_hex(&original.commitment().to_string()).unwrap();
        assert!(commitment.is_kept_by(&read));
    }

    #[test]
    fn malformed_hex_is_refused_with_what_was_expected() {
        for text in ["", "00", &"zz".repeat(32), &"0".repeat(65), &"é".repeat(32)] {
            assert_eq!(
                DrawSeed::parse_hex(text),
                Err(HexError {
                    what: "seed",
                    digits: 64
                }),
                "{text:?}"
            );
        }
    }

    #[test]
    fn debug_output_never_reveals_the_seed() {
        let secret = seed(0xab);
        assert!(!format!("{secret:?}").contains(&secret.to_string()));
    }

    #[test]
    fn a_fan_who_joined_twice_has_one_place() {
        assert_eq!(seed(1).order(&users([5, 9, 5, 5])).len(), 2);
    }

    #[test]
    fn the_checker_accepts_the_draw_and_names_the_first_wrong_place() {
        let secret = seed(3);
        let entrants = users(1..=50);
        let drawn = secret.order(&entrants);
        let commitment = secret.commitment();
        assert_eq!(check_draw(&commitment, &secret, &entrants, &drawn), Ok(()));

        let mut swapped = drawn.clone();
        swapped.swap(2, 7);
        assert_eq!(
            check_draw(&commitment, &secret, &entrants, &swapped),
            Err(DrawMismatch::WrongPlace {
                place: 3,
                published: drawn[7],
                drawn: drawn[2],
            })
        );
        assert_eq!(
            check_draw(&commitment, &secret, &entrants, &drawn[..49]),
            Err(DrawMismatch::WrongLength {
                published: 49,
                drawn: 50
            })
        );
        assert_eq!(
            check_draw(&commitment, &seed(4), &entrants, &drawn),
            Err(DrawMismatch::SeedBreaksCommitment)
        );
    }

    #[test]
    fn without_the_seed_every_entrant_is_equally_likely_to_come_first() {
        // 4,000 seeds over 8 entrants: each should come first ~500 times. A chi-square
        // statistic over 7 degrees of freedom exceeds 24.3 with probability 0.001.
        let entrants = users([3, 1, 4, 15, 9, 26, 5, 35]);
        let mut firsts = [0u32; 8];
        for n in 0..4_000u32 {
            let mut bytes = [0; SEED_BYTES];
            bytes[..4].copy_from_slice(&n.to_le_bytes());
            let first = DrawSeed::from_bytes(bytes).order(&entrants)[0];
            firsts[entrants.iter().position(|&u| u == first).unwrap()] += 1;
        }
        let chi_square: f64 = firsts
            .iter()
            .map(|&seen| (f64::from(seen) - 500.0).powi(2) / 500.0)
            .sum();
        assert!(
            chi_square < 24.3,
            "firsts {firsts:?}, chi-square {chi_square}"
        );
    }

    #[test]
    fn a_published_draw_reads_back_from_json_and_checks_out() {
        let secret = seed(9);
        let published = PublishedDraw {
            queue_id: QueueId::parse("onsale").unwrap(),
            commitment: secret.commitment(),
            seed: Some(secret.clone()),
            order: secret.order(&users(1..=30)),
        };
        let json = serde_json::to_string(&published).unwrap();
        assert!(json.contains(&format!("\"seed\":\"{secret}\"")), "{json}");
        let read: PublishedDraw = serde_json::from_str(&json).unwrap();
        assert_eq!(read, published);
        assert_eq!(read.check(None), Ok(()));
        assert_eq!(read.rank_of(read.order[4]), Some(5));
        // A checker who kept an earlier commitment catches a seed swapped after the fact.
        assert_eq!(
            read.check(Some(&seed(8).commitment())),
            Err(DrawMismatch::SeedBreaksCommitment)
        );
        let unrevealed = PublishedDraw {
            seed: None,
            order: vec![],
            ..published
        };
        assert_eq!(unrevealed.check(None), Err(DrawMismatch::NotRevealed));
    }

    proptest! {
        /// The draw is a permutation of the entrants, does not depend on the order they
        /// joined in, and is the same every time for the same seed.
        #[test]
        fn the_draw_is_a_stable_permutation_of_the_entrants(
            ids in proptest::collection::hash_set(1u64..1_000_000, 0..200),
            bytes in any::<[u8; SEED_BYTES]>(),
        ) {
            let entrants = users(ids.iter().copied());
            let secret = DrawSeed::from_bytes(bytes);
            let drawn = secret.order(&entrants);
            let mut sorted = drawn.clone();
            sorted.sort();
            let mut expected = entrants.clone();
            expected.sort();
            prop_assert_eq!(&sorted, &expected);
            let mut reversed = entrants.clone();
            reversed.reverse();
            prop_assert_eq!(secret.order(&reversed), drawn);
        }

        /// Another seed gives another order: with 20 entrants, two seeds agree on the whole
        /// order with probability 1 / 20!.
        #[test]
        fn another_seed_gives_another_order(
            a in any::<[u8; SEED_BYTES]>(),
            b in any::<[u8; SEED_BYTES]>(),
        ) {
            prop_assume!(a != b);
            let entrants = users(1..=20);
            prop_assert_ne!(
                DrawSeed::from_bytes(a).order(&entrants),
                DrawSeed::from_bytes(b).order(&entrants)
            );
        }
    }
}
