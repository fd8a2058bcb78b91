-- Users and their money. Runs unchanged on MySQL 8.0 and MariaDB 10.11.
-- Money is BIGINT minor units (KRW: 1 = 1 won). Timestamps are DATETIME(3) in UTC
-- (both servers run with time_zone '+00:00'). Idempotency keys and other machine
-- tokens are ascii_bin: compared byte for byte, and a quarter the index size.
--
-- Foreign keys point only at rows that are never locked for writing on the hot
-- path (users, concerts, schedules). A child insert takes a shared lock on its
-- parent row; on a parent that the same transaction later updates (reservation,
-- payment) that shared lock turns into a lock-upgrade deadlock under contention.

CREATE TABLE users (
  id         BIGINT UNSIGNED NOT NULL,
  name       VARCHAR(100)    NOT NULL,
  created_at DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- One row per user, updated with an optimistic lock:
--   UPDATE balances SET amount = amount - ?, version = version + 1
--   WHERE user_id = ? AND version = ?
-- The CHECK makes overdrawing impossible even if the application gets it wrong.
CREATE TABLE balances (
  user_id    BIGINT UNSIGNED NOT NULL,
  amount     BIGINT          NOT NULL,
  version    BIGINT UNSIGNED NOT NULL DEFAULT 0,
  updated_at DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  PRIMARY KEY (user_id),
  CONSTRAINT fk_balances_user FOREIGN KEY (user_id) REFERENCES users (id),
  CONSTRAINT ck_balances_amount_nonneg CHECK (amount >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Point top-ups. A retried request with the same (user_id, idempotency_key) hits
-- the unique key and the handler returns the first result instead of charging twice.
CREATE TABLE charges (
  id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  user_id         BIGINT UNSIGNED NOT NULL,
  idempotency_key VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  amount          BIGINT          NOT NULL,
  balance_after   BIGINT          NOT NULL,
  created_at      DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (id),
  UNIQUE KEY uq_charges_user_key (user_id, idempotency_key),
  CONSTRAINT fk_charges_user FOREIGN KEY (user_id) REFERENCES users (id),
  CONSTRAINT ck_charges_amount_pos CHECK (amount > 0),
  CONSTRAINT ck_charges_balance_after CHECK (balance_after >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Append-only ledger: for every user, balance == SUM(amount) of their entries.
-- amount is the signed delta (PAYMENT negative; OPENING, CHARGE, REFUND positive).
-- The two unique keys make a second CHARGE entry for one charge, or a second
-- PAYMENT or REFUND entry for one payment, impossible; NULLs never collide, so
-- rows of the other types pass. opening_user_id allows one OPENING per user.
CREATE TABLE balance_ledger (
  id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  user_id         BIGINT UNSIGNED NOT NULL,
  entry_type      ENUM('OPENING', 'CHARGE', 'PAYMENT', 'REFUND') NOT NULL,
  amount          BIGINT          NOT NULL,
  balance_after   BIGINT          NOT NULL,
  charge_id       BIGINT UNSIGNED NULL,
  payment_id      BIGINT UNSIGNED NULL,
  created_at      DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  opening_user_id BIGINT UNSIGNED GENERATED ALWAYS AS (IF(entry_type = 'OPENING', user_id, NULL)) STORED,
  PRIMARY KEY (id),
  KEY ix_ledger_user (user_id, id),
  UNIQUE KEY uq_ledger_charge (entry_type, charge_id),
  UNIQUE KEY uq_ledger_payment (entry_type, payment_id),
  UNIQUE KEY uq_ledger_opening (opening_user_id),
  CONSTRAINT fk_ledger_user FOREIGN KEY (user_id) REFERENCES users (id),
  CONSTRAINT ck_ledger_balance_after CHECK (balance_after >= 0),
  -- Each type has its sign and exactly the reference it needs.
  CONSTRAINT ck_ledger_shape CHECK (
       (entry_type = 'OPENING' AND amount >= 0 AND charge_id IS NULL     AND payment_id IS NULL)
    OR (entry_type = 'CHARGE'  AND amount >  0 AND charge_id IS NOT NULL AND payment_id IS NULL)
    OR (entry_type = 'PAYMENT' AND amount <  0 AND charge_id IS NULL     AND payment_id IS NOT NULL)
    OR (entry_type = 'REFUND'  AND amount >  0 AND charge_id IS NULL     AND payment_id IS NOT NULL)
  )
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
