-- Notifications the bridge's consumer records from `notification.request` events: the
-- stand-in for a sender (mail, push). One row per event, written in the same transaction
-- as the consumer's processed_events row, so a redelivered event adds nothing; the unique
-- event_id is a second guard. status is where a real sender would record delivery.
CREATE TABLE notifications (
  id             BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  event_id       CHAR(36)        CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  user_id        BIGINT UNSIGNED NOT NULL,
  kind           ENUM('PAYMENT_COMPLETED', 'PAYMENT_REFUNDED', 'RESERVATION_EXPIRED') NOT NULL,
  reservation_id BIGINT UNSIGNED NOT NULL,
  payment_id     BIGINT UNSIGNED NULL,
  status         ENUM('PENDING', 'SENT') NOT NULL DEFAULT 'PENDING',
  requested_at   DATETIME(3)     NOT NULL,
  recorded_at    DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (id),
  UNIQUE KEY uq_notifications_event (event_id),
  KEY ix_notifications_user (user_id, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
