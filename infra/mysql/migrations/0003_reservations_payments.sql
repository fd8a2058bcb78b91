-- Reservations (holds with an expiry, then confirmed by a payment) and payments.
-- No foreign keys to reservations or seats on purpose: see 0001 (lock upgrades).
-- The generated-column unique keys below are the database's own last line of
-- defence against double booking and double payment.

-- Hot reads:
--   my reservations, newest first       -> ix_reservations_user (user_id, id)
--   expiry sweeper: HELD and expires_at < now -> ix_reservations_status_expires
--   per-schedule state (verifier, stats) -> ix_reservations_schedule_status
CREATE TABLE reservations (
  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  user_id     BIGINT UNSIGNED NOT NULL,
  schedule_id BIGINT UNSIGNED NOT NULL,
  status      ENUM('HELD', 'CONFIRMED', 'EXPIRED', 'CANCELLED', 'REFUNDED') NOT NULL DEFAULT 'HELD',
  amount      BIGINT          NOT NULL,
  expires_at  DATETIME(3)     NOT NULL,
  created_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  PRIMARY KEY (id),
  KEY ix_reservations_user (user_id, id),
  KEY ix_reservations_status_expires (status, expires_at),
  KEY ix_reservations_schedule_status (schedule_id, status),
  CONSTRAINT ck_reservations_amount_nonneg CHECK (amount >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Seats of a reservation. While released_at is NULL the row is live and
-- live_seat_id equals seat_id, so uq_live_seat lets a seat be in at most one live
-- reservation at a time: a second live row for it fails with a duplicate-key error
-- (1062), whatever the application did. Releasing (expiry, cancel, refund) sets
-- released_at, which frees the seat for the next reservation.
-- ix_reservation_seats_seat serves "history of a seat" (verifier).
CREATE TABLE reservation_seats (
  reservation_id BIGINT UNSIGNED NOT NULL,
  seat_id        BIGINT UNSIGNED NOT NULL,
  released_at    DATETIME(3)     NULL,
  live_seat_id   BIGINT UNSIGNED GENERATED ALWAYS AS (IF(released_at IS NULL, seat_id, NULL)) STORED,
  PRIMARY KEY (reservation_id, seat_id),
  UNIQUE KEY uq_live_seat (live_seat_id),
  KEY ix_reservation_seats_seat (seat_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- A retried request with the same (user_id, idempotency_key) finds the first
-- payment; request_hash (SHA-256 of the canonical request) tells a true retry from
-- a different request reusing a key. settled_reservation_id is the reservation id
-- while the payment is SUCCEEDED or REFUNDED, else NULL, so uq_payments_settled lets
-- one reservation be paid at most once; failed and pending attempts do not count.
-- ix_payments_reservation serves "payments of a reservation".
CREATE TABLE payments (
  id                     BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  user_id                BIGINT UNSIGNED NOT NULL,
  reservation_id         BIGINT UNSIGNED NOT NULL,
  idempotency_key        VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  request_hash           BINARY(32)      NOT NULL,
  amount                 BIGINT          NOT NULL,
  status                 ENUM('PENDING', 'SUCCEEDED', 'FAILED', 'REFUNDED') NOT NULL DEFAULT 'PENDING',
  gateway_ref            VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
  failure_code           VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
  created_at             DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at             DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  refunded_at            DATETIME(3)     NULL,
  settled_reservation_id BIGINT UNSIGNED GENERATED ALWAYS AS (
                           IF(status IN ('SUCCEEDED', 'REFUNDED'), reservation_id, NULL)) STORED,
  PRIMARY KEY (id),
  UNIQUE KEY uq_payments_user_key (user_id, idempotency_key),
  UNIQUE KEY uq_payments_settled (settled_reservation_id),
  KEY ix_payments_reservation (reservation_id),
  CONSTRAINT fk_payments_user FOREIGN KEY (user_id) REFERENCES users (id),
  CONSTRAINT ck_payments_amount_pos CHECK (amount > 0),
  -- refunded_at is set exactly when the payment is refunded.
  CONSTRAINT ck_payments_refunded_at CHECK ((status = 'REFUNDED') = (refunded_at IS NOT NULL))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
