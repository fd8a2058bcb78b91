-- Transactional outbox and consumer deduplication.

-- Written in the same transaction as the state change it announces; the bridge
-- relays it to Kafka. The relay's scan
--   SELECT ... FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT n
--   FOR UPDATE SKIP LOCKED
-- reads ix_outbox_unsent (sent_at, id) in order, so several relays share the work
-- without waiting on each other. payload is the event's JSON text exactly as
-- produced (MEDIUMTEXT, not JSON: the bytes are relayed unchanged, never
-- re-serialized). event_id is the event's UUID, unique so it is written once.
CREATE TABLE outbox (
  id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  event_id   CHAR(36)     CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  topic      VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  event_key  VARCHAR(128) NOT NULL,
  payload    MEDIUMTEXT   NOT NULL,
  created_at DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  sent_at    DATETIME(3)  NULL,
  attempts   INT UNSIGNED NOT NULL DEFAULT 0,
  PRIMARY KEY (id),
  UNIQUE KEY uq_outbox_event (event_id),
  KEY ix_outbox_unsent (sent_at, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- A consumer inserts (consumer, event_id) in the transaction that applies the
-- event; a redelivered event hits the primary key and is skipped (at-least-once
-- delivery, exactly-once effect).
CREATE TABLE processed_events (
  consumer     VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  event_id     CHAR(36)    CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  processed_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (consumer, event_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
