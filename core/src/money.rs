//! Money: integer amounts in minor units (KRW has no subunit, so 1 = 1 won), checked
//! arithmetic, balances that can never go negative, and the ledger that explains every
//! balance.
//!
//! The invariant the whole system is audited against: for every user,
//! `balance == opening + charges − payments + refunds`, i.e. the sum of their ledger.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{DomainError, ErrorCode};

/// The largest amount the system handles: far above any ticket price, far below the `BIGINT`
/// column range, so sums of many amounts still cannot overflow.
pub const MAX_AMOUNT: u64 = 1_000_000_000_000;

/// SQL columns and JSON give money as signed integers; the domain has no negative money.
fn unsigned(minor_units: i64) -> Result<u64, MoneyError> {
    u64::try_from(minor_units).map_err(|_| MoneyError::NotPositive)
}

/// A strictly positive amount of money in minor units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Amount(u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount must be a positive whole number of won")]
    NotPositive,
    #[error("amount exceeds the maximum of {MAX_AMOUNT}")]
    TooLarge,
    #[error("balance {balance} does not cover {required}")]
    InsufficientBalance { balance: u64, required: u64 },
    #[error("a single charge may be at most {max}")]
    ChargeTooLarge { max: u64 },
    #[error("a charge may not take the balance above {max}")]
    BalanceLimit { max: u64 },
    #[error("a charge must be at least {min}")]
    ChargeTooSmall { min: u64 },
}

impl DomainError for MoneyError {
    fn code(&self) -> ErrorCode {
        match self {
            MoneyError::NotPositive | MoneyError::TooLarge => ErrorCode::InvalidField,
            MoneyError::InsufficientBalance { .. } => ErrorCode::InsufficientBalance,
            MoneyError::ChargeTooLarge { .. }
            | MoneyError::BalanceLimit { .. }
            | MoneyError::ChargeTooSmall { .. } => ErrorCode::LimitExceeded,
        }
    }
}

impl Amount {
    pub fn new(minor_units: u64) -> Result<Self, MoneyError> {
        match minor_units {
            0 => Err(MoneyError::NotPositive),
            v if v > MAX_AMOUNT => Err(MoneyError::TooLarge),
            v => Ok(Self(v)),
        }
    }

    /// Parses a signed amount as clients and SQL rows give it.
    pub fn from_signed(minor_units: i64) -> Result<Self, MoneyError> {
        unsigned(minor_units).and_then(Self::new)
    }

    pub const fn minor_units(self) -> u64 {
        self.0
    }

    /// Sums amounts, e.g. seat prices into a reservation total.
    pub fn sum(amounts: impl IntoIterator<Item = Amount>) -> Result<Self, MoneyError> {
        amounts
            .into_iter()
            .try_fold(0u64, |total, a| {
                total
                    .checked_add(a.0)
                    .filter(|t| *t <= MAX_AMOUNT)
                    .ok_or(MoneyError::TooLarge)
            })
            .and_then(Self::new)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Accept any JSON number so that 1.5, -3 and 1e30 get a domain message, not serde's.
        let value = serde_json::Number::deserialize(deserializer)?;
        match value.as_i64() {
            Some(v) => Amount::from_signed(v),
            None if value.as_u64().is_some() => Err(MoneyError::TooLarge),
            None => Err(MoneyError::NotPositive),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// Limits on topping up a balance, so a bug or an abuser cannot mint unbounded money.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChargePolicy {
    pub min_charge: u64,
    pub max_single_charge: u64,
    pub max_balance: u64,
}

impl Default for ChargePolicy {
    fn default() -> Self {
        Self {
            min_charge: 1_000,
            max_single_charge: 2_000_000,
            max_balance: 10_000_000,
        }
    }
}

/// A user's spendable balance. Non-negative by construction: every operation that lowers
/// it checks first and fails without changing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Balance(u64);

impl Balance {
    pub const ZERO: Balance = Balance(0);

    pub fn new(minor_units: u64) -> Result<Self, MoneyError> {
        if minor_units > MAX_AMOUNT {
            return Err(MoneyError::TooLarge);
        }
        Ok(Self(minor_units))
    }

    /// Reads a stored balance; a negative stored value is corruption and is refused.
    pub fn from_signed(minor_units: i64) -> Result<Self, MoneyError> {
        unsigned(minor_units).and_then(Self::new)
    }

    pub const fn minor_units(self) -> u64 {
        self.0
    }

    /// Tops up the balance within the policy's limits.
    pub fn charge(self, amount: Amount, policy: &ChargePolicy) -> Result<Self, MoneyError> {
        if amount.0 < policy.min_charge {
            return Err(MoneyError::ChargeTooSmall {
                min: policy.min_charge,
            });
        }
        if amount.0 > policy.max_single_charge {
            return Err(MoneyError::ChargeTooLarge {
                max: policy.max_single_charge,
            });
        }
        match self.0.checked_add(amount.0) {
            Some(total) if total <= policy.max_balance => Ok(Self(total)),
            _ => Err(MoneyError::BalanceLimit {
                max: policy.max_balance,
            }),
        }
    }

    /// Pays from the balance; refused, with nothing changed, if it does not cover `amount`.
    pub fn debit(self, amount: Amount) -> Result<Self, MoneyError> {
        self.0
            .checked_sub(amount.0)
            .map(Self)
            .ok_or(MoneyError::InsufficientBalance {
                balance: self.0,
                required: amount.0,
            })
    }

    /// Gives money back. Refunds ignore the charge policy's balance cap: returning a user's
    /// own money must never fail for being too much.
    pub fn credit(self, amount: Amount) -> Result<Self, MoneyError> {
        self.0
            .checked_add(amount.0)
            .filter(|total| *total <= MAX_AMOUNT)
            .map(Self)
            .ok_or(MoneyError::TooLarge)
    }
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a balance moved. Stored as the `entry_type` of `balance_ledger`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LedgerEntryKind {
    Opening,
    Charge,
    Payment,
    Refund,
}

impl LedgerEntryKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            LedgerEntryKind::Opening => "OPENING",
            LedgerEntryKind::Charge => "CHARGE",
            LedgerEntryKind::Payment => "PAYMENT",
            LedgerEntryKind::Refund => "REFUND",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Opening, Self::Charge, Self::Payment, Self::Refund]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }

    /// Payments take money out; everything else puts it in.
    pub const fn is_debit(self) -> bool {
        matches!(self, LedgerEntryKind::Payment)
    }
}

/// One line of a user's ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    pub kind: LedgerEntryKind,
    pub amount: Amount,
}

impl LedgerEntry {
    /// The signed change this entry makes, as stored in `balance_ledger.amount`.
    pub fn delta(self) -> i64 {
        // Amounts are bounded by MAX_AMOUNT, far inside i64.
        let magnitude = self.amount.0 as i64;
        if self.kind.is_debit() {
            -magnitude
        } else {
            magnitude
        }
    }

    /// Applies this entry to a balance with the same checks the live operations use
    /// (the charge policy is not re-applied: a charge was checked when it was made).
    pub fn apply(self, balance: Balance) -> Result<Balance, MoneyError> {
        if self.kind.is_debit() {
            balance.debit(self.amount)
        } else {
            balance.credit(self.amount)
        }
    }
}

/// Replays a ledger from zero. Fails if the entries ever take the balance below zero, which
/// would mean money was spent that did not exist.
pub fn replay_ledger(
    entries: impl IntoIterator<Item = LedgerEntry>,
) -> Result<Balance, MoneyError> {
    entries
        .into_iter()
        .try_fold(Balance::ZERO, |balance, entry| entry.apply(balance))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn amount(v: u64) -> Amount {
        Amount::new(v).unwrap()
    }

    #[test]
    fn zero_and_negative_amounts_are_rejected() {
        assert_eq!(Amount::new(0), Err(MoneyError::NotPositive));
        assert_eq!(Amount::from_signed(-5), Err(MoneyError::NotPositive));
        assert_eq!(Amount::new(MAX_AMOUNT + 1), Err(MoneyError::TooLarge));
    }

    #[test]
    fn json_amounts_must_be_positive_integers() {
        assert_eq!(
            serde_json::from_str::<Amount>("50000").unwrap(),
            amount(50_000)
        );
        for bad in ["0", "-1", "1.5", "1e30", "18446744073709551615", "\"100\""] {
            assert!(serde_json::from_str::<Amount>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn summing_seat_prices_is_checked() {
        assert_eq!(
            Amount::sum([amount(50_000), amount(50_000)]),
            Ok(amount(100_000))
        );
        assert_eq!(
            Amount::sum([amount(MAX_AMOUNT), amount(1)]),
            Err(MoneyError::TooLarge)
        );
        assert_eq!(Amount::sum([]), Err(MoneyError::NotPositive));
    }

    #[test]
    fn a_debit_larger_than_the_balance_is_refused() {
        let balance = Balance::new(30_000).unwrap();
        assert_eq!(
            balance.debit(amount(50_000)),
            Err(MoneyError::InsufficientBalance {
                balance: 30_000,
                required: 50_000
            })
        );
        assert_eq!(balance.debit(amount(30_000)), Ok(Balance::ZERO));
    }

    #[test]
    fn charges_respect_the_single_and_total_limits() {
        let policy = ChargePolicy {
            min_charge: 100,
            max_single_charge: 1_000,
            max_balance: 1_500,
        };
        let balance = Balance::new(1_000).unwrap();
        assert_eq!(
            balance.charge(amount(99), &policy),
            Err(MoneyError::ChargeTooSmall { min: 100 })
        );
        assert_eq!(
            balance.charge(amount(1_001), &policy),
            Err(MoneyError::ChargeTooLarge { max: 1_000 })
        );
        assert_eq!(
            balance.charge(amount(501), &policy),
            Err(MoneyError::BalanceLimit { max: 1_500 })
        );
        assert_eq!(balance.charge(amount(500), &policy), Balance::new(1_500));
    }

    #[test]
    fn a_refund_may_exceed_the_charge_cap() {
        let policy = ChargePolicy::default();
        let full = Balance::new(policy.max_balance).unwrap();
        assert!(full.credit(amount(50_000)).is_ok());
    }

    #[test]
    fn insufficient_balance_is_a_422_and_limits_are_422_too() {
        let e: crate::ApiError = MoneyError::InsufficientBalance {
            balance: 1,
            required: 2,
        }
        .into();
        assert_eq!(e.http_status(), 422);
        assert_eq!(e.code, ErrorCode::InsufficientBalance);
    }

    #[test]
    fn ledger_kinds_round_trip_through_their_column_names() {
        for kind in [
            LedgerEntryKind::Opening,
            LedgerEntryKind::Charge,
            LedgerEntryKind::Payment,
            LedgerEntryKind::Refund,
        ] {
            assert_eq!(LedgerEntryKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(LedgerEntryKind::parse("payment"), None);
    }

    #[test]
    fn a_ledger_that_spends_money_that_was_never_there_does_not_replay() {
        let entries = [
            LedgerEntry {
                kind: LedgerEntryKind::Opening,
                amount: amount(10),
            },
            LedgerEntry {
                kind: LedgerEntryKind::Payment,
                amount: amount(11),
            },
        ];
        assert!(replay_ledger(entries).is_err());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Charge(u64),
        Pay(u64),
        Refund(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u64..3_000_000).prop_map(Op::Charge),
            (1u64..600_000).prop_map(Op::Pay),
            any::<usize>().prop_map(Op::Refund),
        ]
    }

    proptest! {
        /// Random charges, payments and refunds of earlier payments: whatever is refused
        /// leaves the balance untouched, the balance never goes negative, and it always
        /// equals the replay of its ledger.
        #[test]
        fn a_balance_never_goes_negative_and_always_equals_its_ledger(
            opening in 0u64..1_000_000,
            ops in proptest::collection::vec(op(), 0..200),
        ) {
            let policy = ChargePolicy::default();
            let mut balance = Balance::new(opening).unwrap();
            let mut ledger = Vec::new();
            if let Ok(opening) = Amount::new(opening) {
                ledger.push(LedgerEntry { kind: LedgerEntryKind::Opening, amount: opening });
            }
            let mut refundable: Vec<Amount> = Vec::new();
            for op in ops {
                let before = balance;
                let (kind, amount, result) = match op {
                    Op::Charge(v) => {
                        let a = amount(v);
                        (LedgerEntryKind::Charge, a, balance.charge(a, &policy))
                    }
                    Op::Pay(v) => {
                        let a = amount(v);
                        (LedgerEntryKind::Payment, a, balance.debit(a))
                    }
                    Op::Refund(i) if !refundable.is_empty() => {
                        let a = refundable.swap_remove(i % refundable.len());
                        (LedgerEntryKind::Refund, a, balance.credit(a))
                    }
                    Op::Refund(_) => continue,
                };
                match result {
                    Ok(after) => {
                        let delta = i128::from(after.minor_units()) - i128::from(before.minor_units());
                        prop_assert_eq!(delta, i128::from(LedgerEntry { kind, amount }.delta()));
                        ledger.push(LedgerEntry { kind, amount });
                        if kind == LedgerEntryKind::Payment {
                            refundable.push(amount);
                        }
                        balance = after;
                    }
                    Err(_) => prop_assert_eq!(balance, before),
                }
                prop_assert_eq!(replay_ledger(ledger.iter().copied()), Ok(balance));
            }
        }
    }
}
