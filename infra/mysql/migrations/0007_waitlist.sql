-- The waitlist of a sold-out concert (core::waitlist). A fan told SOLD_OUT by a queue
-- selling the concert joins once; the id is their place on the list. The bridge offers each
-- seat that comes back to the first WAITING entry, as a HELD reservation of the fan's with
-- the offer's own TTL, in one transaction with the entry's move to OFFERED and the
-- `waitlist.offered` and `notification.request` events: an entry is offered at most once
-- (the state moves only from WAITING) and a reservation backs at most one offer
-- (uq_waitlist_offer). PASSED_OVER: the fan owned the concert's cap of seats when their
-- turn came.
CREATE TABLE waitlist_entries (
  id             BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  concert_id     BIGINT UNSIGNED NOT NULL,
  user_id        BIGINT UNSIGNED NOT NULL,
  state          ENUM('WAITING', 'OFFERED', 'PASSED_OVER') NOT NULL DEFAULT 'WAITING',
  joined_at      DATETIME(3)     NOT NULL,
  reservation_id BIGINT UNSIGNED NULL,
  decided_at     DATETIME(3)     NULL,
  PRIMARY KEY (id),
  UNIQUE KEY uq_waitlist_fan (concert_id, user_id),
  UNIQUE KEY uq_waitlist_offer (reservation_id),
  KEY ix_waitlist_turn (concert_id, state, id),
  CONSTRAINT ck_waitlist_offer CHECK ((state = 'OFFERED') = (reservation_id IS NOT NULL)),
  CONSTRAINT ck_waitlist_decided CHECK ((state = 'WAITING') = (decided_at IS NULL))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- An offer is announced to the fan like a payment or an expiry.
ALTER TABLE notifications
  MODIFY COLUMN kind ENUM('PAYMENT_COMPLETED', 'PAYMENT_REFUNDED', 'RESERVATION_EXPIRED',
                          'WAITLIST_OFFERED') NOT NULL;
