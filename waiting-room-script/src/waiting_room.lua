-- The waiting room of one queue, run atomically next to its data. It mirrors the rules of
-- ticketing-core's `queue` module (admission_round, is_abandoned, the token bucket, the
-- line's front) with the same integer arithmetic: milli-tokens, millisecond clocks, floor
-- division. The e2e test `the_script_admits_exactly_as_the_core_rules_decide` holds the two
-- together.
--
-- KEYS (all share the hash tag {q:ID}, so every key the script touches is in one Redis
-- Cluster slot):
--   1 meta    hash: open, rate, max_active, pass_ttl_ms, idle_ms, tokens, refilled_at, seq,
--                   front, waiting, next_round_at, share, strained_at, and for operators
--                   admitted and abandoned (counts since the queue was created), pace and
--                   paced_at (core::queue::AdmissionPace: milli-admissions a second and
--                   when last measured); for a
--                   scheduled queue (core::sale::Opening) also opens_at, commitment, seed,
--                   entrants and drawn; for a queue selling a concert, concert, and
--                   holdable and counted_at (core::sale::Stock: the bridge's last count,
--                   less the fans let in who have not held a seat yet)
--   2 users   prefix of the user hashes: "<prefix><the user id's last 3 digits>" maps a
--             user id to the position of the user's live place (none once it ended), or
--             to "E:entry:joined_at" for an entrant the draw has not placed yet;
--             "<prefix>entrants" lists a scheduled queue's entrants in entry order
--   3 places  prefix of the place hashes: "<prefix><(position - 1) div 128>" maps a position
--             to "W:user:last_seen:joined_at" | "A:user:admitted_at:expires_at:joined_at"
--             | "X:user:REASON" (ABANDONED, PASS_EXPIRED, CONSUMED)
--   4 passes  sorted set of admitted positions, scored by pass expiry; "<passes>:held" is
--             the set of those whose fan has held a seat (no longer choosing one)
--   5, 6      rate-limit counter hashes (user, client address) of join and status
-- ARGV[1] is the operation, ARGV[2] the caller's clock in unix milliseconds.
-- Replies are flat arrays whose first element names the outcome.
--
-- Memory is what bounds a spike's crowd, so a place costs ~50 bytes: places and users live
-- in hashes small enough for Redis's compact encoding (at most 128 fields of at most 64
-- bytes, Redis's defaults), and there is no index of the line. Positions are handed out in
-- order, so the line is the positions from `front` (the first place admission has not
-- passed) to `seq`; admission walks it, skipping places that ended.

local meta, users, places, passes = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local held = passes .. ':held'
local op, now = ARGV[1], tonumber(ARGV[2])

-- Bounds on the work of one call, so that no poll is slow; what is left over (more ended
-- places, expired passes or admissions) happens in the next calls.
local MAX_SCAN = 64
local MAX_EXPIRE = 1000
local MAX_ADMIT = 1000
-- At most one admission round per queue per tick, whoever polls (core::queue::ADMISSION_TICK).
local ADMISSION_TICK_MS = 100
-- Admission follows strain on the seat and payment path (core::queue::AdmissionShare): per
-- mille of the rate, halved per report at most once per spacing, never below the minimum.
local FULL_SHARE, MIN_SHARE, STRAIN_SPACING_MS, RECOVERY_PER_SEC = 1000, 50, 1000, 100
-- The measured pace's weight per second of measurement, per mille
-- (core::queue::AdmissionPace::WEIGHT_PER_SEC_PERMILLE).
local PACE_WEIGHT_PER_SEC = 100
-- A queue's data outlives its last write by two days: longer than any ticket (one day) plus
-- any pass (at most one day), so nothing valid is lost, and a finished sale cleans up.
local RETAIN_MS = 2 * 86400000
-- Places per place hash (waiting_room_script::PLACES_PER_KEY).
local PLACES_PER_KEY = 128

local function int(n)
  return string.format('%d', n)
end

local function settings()
  local v = redis.call('HMGET', meta, 'open', 'rate', 'max_active', 'pass_ttl_ms', 'idle_ms',
    'tokens', 'refilled_at', 'seq', 'front', 'waiting', 'next_round_at', 'share', 'strained_at',
    'opens_at', 'entrants', 'drawn', 'pace', 'paced_at', 'holdable')
  if not v[2] then
    return nil
  end
  return {
    open = v[1] == '1', rate = tonumber(v[2]), max_active = tonumber(v[3]),
    pass_ttl = tonumber(v[4]), idle = tonumber(v[5]), tokens = tonumber(v[6]),
    refilled_at = tonumber(v[7]), seq = tonumber(v[8]), front = tonumber(v[9] or '1'),
    waiting = tonumber(v[10] or '0'), next_round_at = tonumber(v[11] or '0'),
    share = tonumber(v[12] or FULL_SHARE), strained_at = tonumber(v[13] or '0'),
    opens_at = tonumber(v[14]), entrants = tonumber(v[15] or '0'), drawn = tonumber(v[16] or '0'),
    pace = tonumber(v[17] or (tonumber(v[2]) * 1000)), paced_at = tonumber(v[18] or now),
    -- Seats open to a hold that no admission has spoken for since the bridge's last count
    -- (core::sale::Stock); nil for a queue selling no concert, or not counted yet.
    holdable = tonumber(v[19]),
  }
end

-- A scheduled queue's commitment, read only where an answer carries it (not on every poll).
local function commitment()
  return redis.call('HGET', meta, 'commitment') or ''
end

-- A scheduled queue before its opening gathers entrants; from the opening on, the draw
-- places them (core::sale::Opening::phase).
local function gathering(s)
  return s.opens_at ~= nil and now < s.opens_at
end

-- Admission waits until the draw has placed every entrant: their places come first.
local function drawn_all(s)
  return s.opens_at == nil or (now >= s.opens_at and s.drawn >= s.entrants)
end

-- Once a scheduled queue opens, positions 1..entrants belong to the draw: the first late
-- joiner (or the first draw call) moves the counter past them.
local function seal(s)
  if s.opens_at ~= nil and now >= s.opens_at and s.seq < s.entrants then
    s.seq = s.entrants
    redis.call('HSET', meta, 'seq', s.seq)
  end
end

local function entrants_key()
  return users .. 'entrants'
end

-- The share of the rate admitted at now (core::queue::AdmissionShare::at): what the last
-- strain report left, plus RECOVERY_PER_SEC for each whole second after a quiet spacing.
local function share_at(s)
  local quiet = now - s.strained_at
  if quiet < STRAIN_SPACING_MS then
    return s.share
  end
  return math.min(s.share + math.floor((quiet - STRAIN_SPACING_MS) / 1000) * RECOVERY_PER_SEC, FULL_SHARE)
end

local function place_key(position)
  return places .. int(math.floor((position - 1) / PLACES_PER_KEY))
end

-- User ids are decimal; their last three digits (zero-padded) spread any id scheme over
-- 1,000 hashes.
local function user_key(user)
  return users .. string.sub('00' .. user, -3)
end

local function parse_place(value)
  if not value then
    return nil
  end
  local state, user, a, b, c = string.match(value, '^(%u):(%d+):([%u%d_]+):?(%d*):?(%d*)$')
  if state == 'W' then
    return { state = 'W', user = user, last_seen = tonumber(a), joined_at = b }
  elseif state == 'A' then
    return { state = 'A', user = user, admitted_at = tonumber(a), expires_at = tonumber(b), joined_at = c }
  elseif state == 'X' then
    return { state = 'X', user = user, reason = a }
  end
  return nil
end

local function read_place(position)
  return parse_place(redis.call('HGET', place_key(position), position))
end

local function write_place(position, ...)
  redis.call('HSET', place_key(position), position, table.concat({ ... }, ':'))
end

-- Ends a place. The place keeps its reason (a status poll answers ENDED with it), but the
-- user's entry goes: a user has at most one live place, which this was, and a later join
-- takes a new place either way. The caller counts a waiting place out of `waiting`.
local function end_place(position, user, reason)
  write_place(position, 'X', user, reason)
  redis.call('HDEL', user_key(user), user)
end

-- `admitted` and `abandoned` places left the line.
local function left_line(admitted, abandoned)
  if admitted > 0 then
    redis.call('HINCRBY', meta, 'admitted', admitted)
  end
  if abandoned > 0 then
    redis.call('HINCRBY', meta, 'abandoned', abandoned)
  end
  if admitted + abandoned > 0 then
    redis.call('HINCRBY', meta, 'waiting', -(admitted + abandoned))
  end
end

-- Fixed windows aligned to the clock: the counter of `field` in hash `key` (one per
-- operation, window and bucket of subjects, named by the caller). A field costs some 15
-- bytes where a key per subject would cost 90. Returns the milliseconds to wait when the
-- limit is exceeded.
local function over_limit(key, field, limit, window_ms)
  if limit == 0 then
    return nil
  end
  local left = window_ms - now % window_ms
  local count = redis.call('HINCRBY', key, field, 1)
  if count == 1 then
    redis.call('PEXPIRE', key, left)
  end
  if count > limit then
    return left
  end
  return nil
end

-- ARGV[first .. first + 5]: the user, its limit and window; the address, its limit and
-- window. Both counters count every request, refused or not, so a flood cannot hide behind
-- either subject.
local function limited(first)
  local by_user = over_limit(KEYS[5], ARGV[first], tonumber(ARGV[first + 1]), tonumber(ARGV[first + 2]))
  local by_address = over_limit(KEYS[6], ARGV[first + 3], tonumber(ARGV[first + 4]), tonumber(ARGV[first + 5]))
  if by_user and by_address then
    return math.max(by_user, by_address)
  end
  return by_user or by_address
end

-- What every fan's call checks first: the rate limits at ARGV[first ..], then the queue. A
-- refusal to answer with (or nil), and the queue's settings (nil for no queue).
local function gate(first)
  local wait = limited(first)
  if wait then
    return { 'LIMITED', wait }
  end
  return nil, settings()
end

local function retain()
  redis.call('PEXPIRE', meta, RETAIN_MS)
  redis.call('PEXPIRE', passes, RETAIN_MS)
  redis.call('PEXPIRE', held, RETAIN_MS)
end

-- A pass ended (expired, consumed, replaced): its slot is free, and it chooses no seat.
local function drop_pass(position)
  redis.call('ZREM', passes, position)
  redis.call('SREM', held, position)
end

-- Passes that lived out their TTL free their slots.
local function expire_passes()
  local expired = redis.call('ZRANGEBYSCORE', passes, '-inf', now, 'LIMIT', 0, MAX_EXPIRE)
  for _, position in ipairs(expired) do
    local place = read_place(position)
    if place and place.state == 'A' then
      end_place(position, place.user, 'PASS_EXPIRED')
    end
    drop_pass(position)
  end
end

-- One admission round: refill the bucket, then walk the line from its front in order,
-- passing ended and abandoned places and admitting while tokens and free slots last; stop
-- at the first live place that cannot be admitted, which becomes the front.
local function admission_round(s)
  expire_passes()
  local tokens, refilled_at = s.tokens, s.refilled_at
  if now > refilled_at then
    local elapsed = math.min(now - refilled_at, 1000)
    tokens = math.min(tokens + math.floor(elapsed * s.rate * share_at(s) / 1000), s.rate * 1000)
    refilled_at = now
  end
  local free = math.max(s.max_active - redis.call('ZCARD', passes), 0)
  local budget = math.min(math.floor(tokens / 1000), free)
  if s.holdable then
    budget = math.min(budget, s.holdable)
  end
  local last = math.min(s.seq, s.front + math.min(budget, MAX_ADMIT) + MAX_SCAN - 1)
  local position, admitted, abandoned, stopped = s.front, 0, 0, false
  while position <= last and not stopped do
    -- One read per place hash: the rest of this hash's places up to `last`.
    local through = math.min(last, (math.floor((position - 1) / PLACES_PER_KEY) + 1) * PLACES_PER_KEY)
    local fields = {}
    for p = position, through do
      fields[#fields + 1] = p
    end
    local values = redis.call('HMGET', place_key(position), unpack(fields))
    for i = 1, #fields do
      local place = parse_place(values[i])
      if place and place.state == 'W' then
        if now >= place.last_seen + s.idle then
          end_place(position, place.user, 'ABANDONED')
          abandoned = abandoned + 1
        elseif admitted < budget then
          write_place(position, 'A', place.user, int(now), int(now + s.pass_ttl), place.joined_at)
          redis.call('ZADD', passes, now + s.pass_ttl, position)
          admitted = admitted + 1
        else
          stopped = true
          break
        end
      end
      position = position + 1
    end
  end
  left_line(admitted, abandoned)
  -- The pace (core::queue::AdmissionPace::after): measured only by a round that held a
  -- fan back, over at most the bucket's one second; any other round restarts the interval.
  local elapsed = now - s.paced_at
  if elapsed > 0 then
    if stopped then
      local counted = math.min(elapsed, 1000)
      local interval = math.floor(admitted * 1000000 / counted)
      local weight = math.floor(counted * PACE_WEIGHT_PER_SEC / 1000)
      s.pace = math.floor((s.pace * (1000 - weight) + interval * weight) / 1000)
    end
    s.paced_at = now
  end
  -- The caller goes on with `s` as the round left it, without reading the meta hash again.
  s.tokens, s.refilled_at, s.front = tokens - admitted * 1000, refilled_at, position
  s.waiting = s.waiting - admitted - abandoned
  redis.call('HSET', meta, 'tokens', int(s.tokens), 'refilled_at', int(refilled_at),
    'front', int(position), 'pace', int(s.pace), 'paced_at', int(s.paced_at))
  -- Each admitted fan speaks for a seat until the next count says what they took.
  if s.holdable and admitted > 0 then
    s.holdable = s.holdable - admitted
    redis.call('HSET', meta, 'holdable', int(s.holdable))
  end
  -- The first admission creates the passes key, which then needs its expiry too.
  if admitted > 0 and redis.call('PTTL', passes) == -1 then
    retain()
  end
end

local function describe(s)
  local totals = redis.call('HMGET', meta, 'admitted', 'abandoned')
  return { 'QUEUE', s.open and 1 or 0, s.rate, s.max_active, s.pass_ttl, s.idle, s.seq,
    s.waiting, redis.call('ZCOUNT', passes, '(' .. int(now), '+inf'), share_at(s),
    tonumber(totals[1] or '0'), tonumber(totals[2] or '0'), s.opens_at or 0, s.entrants,
    s.drawn, commitment(), redis.call('HGET', meta, 'concert') or '', s.holdable or -1 }
end

local function create(open, rate, max_active, pass_ttl, idle)
  redis.call('HSET', meta, 'open', open, 'rate', rate, 'max_active', max_active,
    'pass_ttl_ms', pass_ttl, 'idle_ms', idle, 'tokens', 0, 'refilled_at', int(now), 'seq', 0,
    'front', 1, 'waiting', 0, 'pace', int(tonumber(rate) * 1000), 'paced_at', int(now))
end

-- The user's entry as an entrant ("E:entry:joined_at"), or nil.
local function parse_entry(value)
  if not value then
    return nil
  end
  local entry, joined_at = string.match(value, '^E:(%d+):(%d+)$')
  if not entry then
    return nil
  end
  return { entry = tonumber(entry), joined_at = tonumber(joined_at) }
end

-- join: ARGV 3 user, 4..9 limits, 10 create-if-missing (0/1), 11..14 the policy to create
-- with (rate, max active, pass ttl ms, idle ms).
if op == 'join' then
  local user = ARGV[3]
  local refused, s = gate(4)
  if refused then
    return refused
  end
  if not s then
    if ARGV[10] ~= '1' then
      return { 'UNKNOWN_QUEUE' }
    end
    create(1, ARGV[11], ARGV[12], ARGV[13], ARGV[14])
    s = settings()
  end
  if not s.open then
    return { 'CLOSED' }
  end
  local current = redis.call('HGET', user_key(user), user)
  local entered = parse_entry(current)
  if entered then
    return { 'ENTRANT', entered.entry, entered.joined_at, s.opens_at, commitment() }
  end
  if gathering(s) then
    local entry = redis.call('HINCRBY', meta, 'entrants', 1)
    local user_hash = user_key(user)
    redis.call('HSET', user_hash, user, 'E:' .. int(entry) .. ':' .. int(now))
    redis.call('PEXPIRE', user_hash, RETAIN_MS)
    redis.call('RPUSH', entrants_key(), user)
    if entry % 1000 == 1 then
      redis.call('PEXPIRE', entrants_key(), RETAIN_MS)
      retain()
    end
    return { 'ENTERED', entry, now, s.opens_at, commitment() }
  end
  seal(s)
  if current then
    local place = read_place(current)
    if place and place.state == 'W' and now < place.last_seen + s.idle then
      write_place(current, 'W', user, int(now), place.joined_at)
      return { 'EXISTING', tonumber(current), tonumber(place.joined_at) }
    elseif place and place.state == 'A' and now < place.expires_at then
      return { 'EXISTING', tonumber(current), tonumber(place.joined_at) }
    elseif place and place.state == 'W' then
      end_place(current, user, 'ABANDONED')
      left_line(0, 1)
    elseif place and place.state == 'A' then
      end_place(current, user, 'PASS_EXPIRED')
      drop_pass(current)
    end
  end
  local position = redis.call('HINCRBY', meta, 'seq', 1)
  redis.call('HINCRBY', meta, 'waiting', 1)
  local user_hash = user_key(user)
  redis.call('HSET', user_hash, user, int(position))
  redis.call('PEXPIRE', user_hash, RETAIN_MS)
  write_place(position, 'W', user, int(now), int(now))
  -- A place hash lives two days past its last join, and the queue's own keys are kept days
  -- ahead by every thousandth join (refreshing them on each would double a join's work).
  redis.call('PEXPIRE', place_key(position), RETAIN_MS)
  if position % 1000 == 1 then
    retain()
  end
  return { 'JOINED', position, now }
end

-- A waiting fan's poll of their place at `position`: their sign of life; runs the queue's
-- admission round when this tick has not had one yet (and the draw placed everyone).
local function poll(s, position, user)
  local place = read_place(position)
  if not place or place.user ~= user then
    return { 'PLACE_GONE' }
  end
  if place.state == 'W' then
    if now >= place.last_seen + s.idle then
      end_place(position, user, 'ABANDONED')
      left_line(0, 1)
      s.waiting = s.waiting - 1
      place = { state = 'X', user = user, reason = 'ABANDONED' }
    else
      write_place(position, 'W', user, int(now), place.joined_at)
    end
  end
  if now >= s.next_round_at and drawn_all(s) then
    admission_round(s)
    redis.call('HSET', meta, 'next_round_at', int(now + ADMISSION_TICK_MS))
    -- The round may have admitted the caller or ended their pass: read the place again.
    place = read_place(position)
  elseif place.state == 'A' and now >= place.expires_at then
    -- No round this tick; the caller's own pass still ends when it lapses.
    end_place(position, user, 'PASS_EXPIRED')
    drop_pass(position)
    place = { state = 'X', user = user, reason = 'PASS_EXPIRED' }
  end
  if place.state == 'W' then
    return { 'WAITING', s.front, s.rate, s.max_active, s.pass_ttl, s.idle, s.waiting, s.pace,
      s.holdable == 0 and 1 or 0 }
  elseif place.state == 'A' then
    return { 'ACTIVE', place.admitted_at, place.expires_at }
  end
  return { 'ENDED', place.reason }
end

-- `gate` for a queue that must exist: a refusal, or the queue's settings.
local function gate_queue(first)
  local refused, s = gate(first)
  if not refused and not s then
    refused = { 'UNKNOWN_QUEUE' }
  end
  return refused, s
end

-- status: ARGV 3 position, 4 user, 5..10 limits.
if op == 'status' then
  local refused, s = gate_queue(5)
  if refused then
    return refused
  end
  return poll(s, ARGV[3], ARGV[4])
end

-- entry: ARGV 3 user, 4..9 limits. An entrant's poll: GATHERING before the opening,
-- DRAWING from it until the draw placed them (both with the opening, the entrant count and
-- the commitment), then PLACED with their drawn position and the answer of a status poll.
if op == 'entry' then
  local user = ARGV[3]
  local refused, s = gate_queue(4)
  if refused then
    return refused
  end
  local current = redis.call('HGET', user_key(user), user)
  if not current then
    return { 'PLACE_GONE' }
  end
  if parse_entry(current) then
    local phase = gathering(s) and 'GATHERING' or 'DRAWING'
    return { phase, s.opens_at, s.entrants, commitment() }
  end
  local reply = poll(s, current, user)
  table.insert(reply, 1, tonumber(current))
  table.insert(reply, 1, 'PLACED')
  return reply
end

-- draw_plan: ARGV 3 the lease in ms. What the draw needs once the queue opened, for one
-- caller at a time (the lease's holder): the entrant count, how many the draw placed so far,
-- and the seed. NOT_YET before the opening (the seed stays secret), DONE once everyone is
-- placed, BUSY while another caller holds the lease.
if op == 'draw_plan' then
  local s = settings()
  if not s or s.opens_at == nil then
    return { 'UNSCHEDULED' }
  end
  if now < s.opens_at then
    return { 'NOT_YET', s.opens_at }
  end
  if s.drawn >= s.entrants then
    return { 'DONE' }
  end
  if not redis.call('SET', meta .. ':draw-lease', '1', 'NX', 'PX', tonumber(ARGV[3])) then
    return { 'BUSY' }
  end
  return { 'PLAN', s.entrants, s.drawn, redis.call('HGET', meta, 'seed') }
end

-- entrants: ARGV 3 first (0-based), 4 count. The entrants in entry order.
if op == 'entrants' then
  return redis.call('LRANGE', entrants_key(), tonumber(ARGV[3]), tonumber(ARGV[3]) + tonumber(ARGV[4]) - 1)
end

-- draw: ARGV 3 how many the draw placed before this call, 4.. the next entrants in drawn
-- order. Places them at the next positions, waiting from now; applies only if nobody placed
-- them meanwhile (another caller running the same draw), so a draw interrupted halfway is
-- finished by the next caller without a place given twice. Answers DRAWN, placed so far and
-- the entrant count.
if op == 'draw' then
  local s = settings()
  if not s or s.opens_at == nil or now < s.opens_at then
    return { 'NOT_YET' }
  end
  seal(s)
  local start = tonumber(ARGV[3])
  if start ~= s.drawn then
    return { 'DRAWN', s.drawn, s.entrants }
  end
  local placed = 0
  for i = 4, #ARGV do
    local user = ARGV[i]
    local entered = parse_entry(redis.call('HGET', user_key(user), user))
    if not entered or start + placed >= s.entrants then
      return redis.error_reply('draw: user ' .. user .. ' is not an unplaced entrant')
    end
    local position = start + placed + 1
    write_place(position, 'W', user, int(now), int(entered.joined_at))
    redis.call('PEXPIRE', place_key(position), RETAIN_MS)
    redis.call('HSET', user_key(user), user, int(position))
    placed = placed + 1
  end
  s.drawn = start + placed
  redis.call('HSET', meta, 'drawn', s.drawn)
  redis.call('HINCRBY', meta, 'waiting', placed)
  return { 'DRAWN', s.drawn, s.entrants }
end

-- draw_info: the public draw of a scheduled queue: opening, commitment, entrant count,
-- placed so far, and the seed once the draw placed everyone (empty before).
if op == 'draw_info' then
  local s = settings()
  if not s or s.opens_at == nil then
    return { 'UNSCHEDULED' }
  end
  local seed = ''
  if drawn_all(s) then
    seed = redis.call('HGET', meta, 'seed')
  end
  return { 'DRAW', s.opens_at, commitment(), s.entrants, s.drawn, seed }
end

-- drawn_order: ARGV 3 first position, 4 count. The users at those places (every state
-- keeps its user), for the published order.
if op == 'drawn_order' then
  local first, count = tonumber(ARGV[3]), tonumber(ARGV[4])
  local users_at = {}
  for position = first, first + count - 1 do
    local place = read_place(position)
    users_at[#users_at + 1] = place and place.user or ''
  end
  return users_at
end

-- consume: ARGV 3 position, 4 user. Ends a live pass after its payment; idempotent.
if op == 'consume' then
  local position, user = ARGV[3], ARGV[4]
  local place = read_place(position)
  if not place or place.user ~= user then
    return { 'PLACE_GONE' }
  end
  if place.state == 'X' and place.reason == 'CONSUMED' then
    return { 'CONSUMED' }
  end
  if place.state ~= 'A' or now >= place.expires_at then
    return { 'NOT_ACTIVE' }
  end
  end_place(position, user, 'CONSUMED')
  drop_pass(position)
  return { 'CONSUMED' }
end

-- Whether the pass at `position` is `user`'s and still counts: admitted, not expired, not
-- consumed.
local function pass_live(position, user)
  local place = read_place(position)
  return place and place.user == user and place.state == 'A' and now < place.expires_at
end

-- held: ARGV 3 position, 4 user. The pass's fan has held a seat, which the seat store now
-- counts as taken: from here on the pass no longer speaks for a seat (see stock).
if op == 'held' then
  local position = ARGV[3]
  if not pass_live(position, ARGV[4]) then
    return { 'NOT_ACTIVE' }
  end
  if redis.call('SADD', held, position) == 1 and redis.call('PTTL', held) == -1 then
    redis.call('PEXPIRE', held, RETAIN_MS)
  end
  return { 'HELD' }
end

-- check: ARGV 3 position, 4 user. Whether a pass still counts: admitted, not expired, not
-- consumed. Read-only.
if op == 'check' then
  if pass_live(ARGV[3], ARGV[4]) then
    return { 'ACTIVE' }
  end
  return { 'NOT_ACTIVE' }
end

-- head: what any fan of the queue may know, the same for all of them, so a cache in front
-- of the app (a CDN) can answer it: the line's front (the next position to be handed out
-- when none waits), the last position handed out, how many wait, whether it is open, and
-- the operator's admission rate. Reads only.
if op == 'head' then
  local s = settings()
  if not s then
    return { 'UNKNOWN_QUEUE' }
  end
  return { 'HEAD', s.front, s.seq, s.waiting, s.open and 1 or 0, s.rate }
end

-- strain: a seat or payment request of a pass of this queue found the path saturated; the
-- share halves (core::queue::AdmissionShare::strained). Answers the share now.
if op == 'strain' then
  local s = settings()
  if not s then
    return { 'UNKNOWN_QUEUE' }
  end
  if now >= s.strained_at + STRAIN_SPACING_MS then
    s.share = math.max(math.floor(share_at(s) / 2), MIN_SHARE)
    s.strained_at = now
    redis.call('HSET', meta, 'share', s.share, 'strained_at', int(now))
  end
  return { 'STRAINED', share_at(s) }
end

-- sell: ARGV 3 the concert the queue sells. The stock of a concert it newly sells is
-- unknown (not sold out) until the bridge counts it.
if op == 'sell' then
  local s = settings()
  if not s then
    return { 'UNKNOWN_QUEUE' }
  end
  if redis.call('HGET', meta, 'concert') ~= ARGV[3] then
    redis.call('HSET', meta, 'concert', ARGV[3])
    redis.call('HDEL', meta, 'holdable', 'counted_at')
  end
  return describe(settings())
end

-- stock: ARGV 3 the concert counted, 4 its seats open to a hold, 5 when the seat store
-- counted them (its own clock). Fans let in who have not held a seat yet will take some of
-- those seats, so each still speaks for one (core::sale::Stock::counted). A count older
-- than the one kept, or of a concert the queue does not sell, changes nothing. Answers the
-- seats left to admit for as kept, or NOT_SELLING with the concert the queue sells ('' for
-- none).
if op == 'stock' then
  local v = redis.call('HMGET', meta, 'rate', 'concert', 'counted_at', 'holdable')
  if not v[1] then
    return { 'UNKNOWN_QUEUE' }
  end
  if v[2] ~= ARGV[3] then
    return { 'NOT_SELLING', v[2] or '' }
  end
  if tonumber(v[3] or '0') < tonumber(ARGV[5]) then
    expire_passes()
    local choosing = redis.call('ZCARD', passes) - redis.call('SCARD', held)
    local holdable = math.max(tonumber(ARGV[4]) - choosing, 0)
    redis.call('HSET', meta, 'holdable', int(holdable), 'counted_at', ARGV[5])
    return { 'STOCK', holdable }
  end
  return { 'STOCK', tonumber(v[4]) }
end

-- settings: the queue's configuration and counts.
if op == 'settings' then
  local s = settings()
  if not s then
    return { 'UNKNOWN_QUEUE' }
  end
  return describe(s)
end

-- configure: ARGV 3 open (0/1), 4 rate, 5 max active, 6 pass ttl ms, 7 idle ms, and to
-- create a scheduled queue 8 opens at, 9 commitment, 10 seed. Creates the queue, or settles
-- the bucket at the old rate before switching to the new one. EXISTS if ARGV 8 asks to
-- schedule a queue that exists: its opening and draw are fixed.
if op == 'configure' then
  local s = settings()
  if s and ARGV[8] then
    return { 'EXISTS' }
  end
  if not s then
    create(ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
    if ARGV[8] then
      redis.call('HSET', meta, 'opens_at', ARGV[8], 'commitment', ARGV[9], 'seed', ARGV[10],
        'entrants', 0, 'drawn', 0)
    end
  else
    if drawn_all(s) then
      admission_round(s)
    end
    local rate = tonumber(ARGV[4])
    redis.call('HSET', meta, 'open', ARGV[3], 'rate', rate, 'max_active', ARGV[5],
      'pass_ttl_ms', ARGV[6], 'idle_ms', ARGV[7], 'tokens', int(math.min(s.tokens, rate * 1000)))
  end
  retain()
  return describe(settings())
end

return redis.error_reply('unknown waiting room operation ' .. tostring(op))
