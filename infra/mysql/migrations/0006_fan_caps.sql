-- One cap per fan and concert: at most seats_per_fan seats of a concert held or bought
-- by one fan, across all their reservations and the concert's schedules. NULL is no cap,
-- and then a hold does no extra work for it.
ALTER TABLE concerts
  ADD COLUMN seats_per_fan INT UNSIGNED NULL AFTER venue,
  ADD CONSTRAINT ck_concerts_seats_per_fan CHECK (seats_per_fan IS NULL OR seats_per_fan > 0);

-- The row a hold of a capped concert locks (INSERT ... ON DUPLICATE KEY UPDATE) before it
-- counts the fan's seats of the concert, so two holds by one fan at once count one after
-- the other instead of both passing on the same count. It carries nothing else.
CREATE TABLE fan_concert_locks (
  user_id    BIGINT UNSIGNED NOT NULL,
  concert_id BIGINT UNSIGNED NOT NULL,
  PRIMARY KEY (user_id, concert_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
