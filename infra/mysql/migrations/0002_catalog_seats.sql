-- Concert catalog and seats. Catalog ids are assigned by the seed (deterministic:
-- schedule = concert * 100 + n, seat = schedule * 10000 + n), hence no AUTO_INCREMENT.

CREATE TABLE concerts (
  id         BIGINT UNSIGNED NOT NULL,
  title      VARCHAR(200)    NOT NULL,
  artist     VARCHAR(200)    NOT NULL,
  venue      VARCHAR(200)    NOT NULL,
  created_at DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- ix_schedules_concert serves "schedules of a concert, by date".
CREATE TABLE schedules (
  id          BIGINT UNSIGNED NOT NULL,
  concert_id  BIGINT UNSIGNED NOT NULL,
  starts_at   DATETIME(3)     NOT NULL,
  total_seats INT UNSIGNED    NOT NULL,
  created_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (id),
  KEY ix_schedules_concert (concert_id, starts_at),
  CONSTRAINT fk_schedules_concert FOREIGN KEY (concert_id) REFERENCES concerts (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- The seat row is what a reservation locks (SELECT ... FOR UPDATE by primary key).
-- Hot reads:
--   seat map of a schedule            -> uq_seats_schedule_no (schedule_id, seat_no)
--   available seats / counts per state -> ix_seats_schedule_status
--   expiry sweeper: HELD and held_until < now -> ix_seats_status_held
-- The CHECKs keep status and reservation_id consistent: a free seat belongs to no
-- reservation, a held or sold one to exactly one, and a hold always has an expiry
-- (otherwise the sweeper could never free it).
CREATE TABLE seats (
  id             BIGINT UNSIGNED NOT NULL,
  schedule_id    BIGINT UNSIGNED NOT NULL,
  seat_no        INT UNSIGNED    NOT NULL,
  label          VARCHAR(16)     NOT NULL,
  price          BIGINT          NOT NULL,
  status         ENUM('AVAILABLE', 'HELD', 'SOLD') NOT NULL DEFAULT 'AVAILABLE',
  reservation_id BIGINT UNSIGNED NULL,
  held_until     DATETIME(3)     NULL,
  version        INT UNSIGNED    NOT NULL DEFAULT 0,
  updated_at     DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  PRIMARY KEY (id),
  UNIQUE KEY uq_seats_schedule_no (schedule_id, seat_no),
  KEY ix_seats_schedule_status (schedule_id, status),
  KEY ix_seats_status_held (status, held_until),
  CONSTRAINT fk_seats_schedule FOREIGN KEY (schedule_id) REFERENCES schedules (id),
  CONSTRAINT ck_seats_price_nonneg CHECK (price >= 0),
  CONSTRAINT ck_seats_owner CHECK (
       (status = 'AVAILABLE' AND reservation_id IS NULL)
    OR (status <> 'AVAILABLE' AND reservation_id IS NOT NULL)
  ),
  CONSTRAINT ck_seats_hold_expires CHECK (status <> 'HELD' OR held_until IS NOT NULL)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
