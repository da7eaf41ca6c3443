/*
 * The Redis scripts behind quotas. Each runs atomically on the keys of one subject, all
 * tagged "{org:<id>}" or "{anon:<network>}" so they share a Redis Cluster hash slot, and
 * each takes the time from Redis TIME (microseconds), never from a gateway's clock.
 * Buckets are hashes {t = tokens, ts = last update in µs}; a bucket that does not exist
 * is full. Monthly usage is a counter per period; concurrency a sorted set of running
 * downloads scored by their expiry.
 */
#include "meter/quota_int.h"

/* KEYS: requests, bytes, month, next month, concurrency, events, month seeded, next month
 * seeded (a month counter is "seeded" once it holds PostgreSQL's usage: see the seed
 * script).
 * ARGV: 1 rpm, 2 request burst, 3 bytes/s, 4 byte burst, 5 monthly bytes, 6 max concurrent,
 * 7 charge (0 for HEAD), 8 download (joins concurrency, checks the month), 9 member,
 * 10 member ttl ms, 11 period end µs, 12 next period end µs, 13 shadow, 14 first lease
 * (bytes an admitted download takes at once, as the lease script would: 0 for none),
 * 15 '1': answer {-1} without deciding when the month counter is not seeded yet,
 * 16 extra request tokens an admitted request takes for its gateway's pool (at most what
 * the bucket holds).
 * Returns {admitted, refused policy, retry µs, requests left, requests refill µs,
 * bytes left, bytes refill µs, month used, month end µs, downloads running, now µs,
 * wait µs before the first lease's bytes may flow, extra tokens granted}.
 * A refused request writes nothing but its refusal counter. */
const char quota_lua_admit[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local rpm, rburst = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local bps, bburst = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local monthly, maxc = tonumber(ARGV[5]), tonumber(ARGV[6])\n"
    "local charge, download, shadow = ARGV[7] == '1', ARGV[8] == '1', ARGV[13] == '1'\n"
    "local refused, retry = '', 0\n"
    "local rtok, rcap, rfill = 0, 0, 0\n"
    "if rpm > 0 then\n"
    "  rcap = rburst > 0 and rburst or rpm\n"
    "  local h = redis.call('HMGET', KEYS[1], 't', 'ts')\n"
    "  rtok = tonumber(h[1]) or rcap\n"
    "  local ts = tonumber(h[2]) or now\n"
    "  if now > ts then rtok = math.min(rcap, rtok + (now - ts) * rpm / 60e6) end\n"
    "  if charge and rtok < 1 then refused = 'requests'; retry = (1 - rtok) * 60e6 / rpm end\n"
    "end\n"
    "local btok, bfill = 0, 0\n"
    "if bps > 0 then\n"
    "  local bcap = bburst > 0 and bburst or bps\n"
    "  local h = redis.call('HMGET', KEYS[2], 't', 'ts')\n"
    "  btok = tonumber(h[1]) or bcap\n"
    "  local ts = tonumber(h[2]) or now\n"
    "  if now > ts then btok = math.min(bcap, btok + (now - ts) * bps / 1e6) end\n"
    "  bfill = (bcap - btok) * 1e6 / bps\n"
    "end\n"
    "local mkey, mend, skey = KEYS[3], tonumber(ARGV[11]), KEYS[7]\n"
    "if now >= mend then mkey = KEYS[4]; mend = tonumber(ARGV[12]); skey = KEYS[8] end\n"
    "if monthly > 0 and ARGV[15] == '1' and redis.call('EXISTS', skey) == 0 then\n"
    "  return {-1}\n"
    "end\n"
    "local used = 0\n"
    "if monthly > 0 then\n"
    "  used = tonumber(redis.call('GET', mkey) or '0')\n"
    "  if refused == '' and charge and download and used >= monthly then\n"
    "    refused = 'monthly_bytes'; retry = mend - now\n"
    "  end\n"
    "end\n"
    "local running = 0\n"
    "if maxc > 0 then\n"
    "  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)\n"
    "  running = redis.call('ZCARD', KEYS[5])\n"
    "  if refused == '' and download and running >= maxc then\n"
    "    refused = 'concurrency'; retry = 1e6\n"
    "  end\n"
    "end\n"
    "local admit = refused == '' or shadow\n"
    "local granted = 0\n"
    "if admit then\n"
    "  if rpm > 0 and charge then\n"
    "    rtok = math.max(0, rtok - 1)\n"
    "    if refused == '' then\n"
    "      granted = math.max(0, math.min(tonumber(ARGV[16]), math.floor(rtok)))\n"
    "      rtok = rtok - granted\n"
    "    end\n"
    "    redis.call('HSET', KEYS[1], 't', rtok, 'ts', now)\n"
    "    redis.call('PEXPIRE', KEYS[1], math.ceil(rcap * 60000 / rpm) + 1000)\n"
    "  end\n"
    "  if maxc > 0 and download then\n"
    "    redis.call('ZADD', KEYS[5], now + tonumber(ARGV[10]) * 1000, ARGV[9])\n"
    "    redis.call('PEXPIRE', KEYS[5], tonumber(ARGV[10]) * 2)\n"
    "    running = running + 1\n"
    "  end\n"
    "end\n"
    "local lease, wait = tonumber(ARGV[14]), 0\n"
    "if admit and download and lease > 0 then\n"
    "  if bps > 0 then\n"
    "    local bcap = bburst > 0 and bburst or bps\n"
    "    btok = btok - lease\n"
    "    if btok < 0 then wait = -btok * 1e6 / bps end\n"
    "    bfill = (bcap - btok) * 1e6 / bps\n"
    "    redis.call('HSET', KEYS[2], 't', btok, 'ts', now)\n"
    "    redis.call('PEXPIRE', KEYS[2], math.ceil((bcap - btok) * 1000 / bps) + 1000)\n"
    "  end\n"
    "  if monthly > 0 then\n"
    "    redis.call('INCRBY', mkey, lease)\n"
    "    redis.call('PEXPIRE', mkey, 3456000000)\n"
    "  end\n"
    "end\n"
    "if rpm > 0 then rfill = (rcap - rtok) * 60e6 / rpm end\n"
    "local near = (rpm > 0 and rtok < 0.2 * rcap) or (monthly > 0 and used >= 0.8 * monthly)\n"
    "if refused ~= '' then redis.call('HINCRBY', KEYS[6], 'refused_' .. refused, 1) end\n"
    "if near then redis.call('HINCRBY', KEYS[6], 'near_limit', 1) end\n"
    "if refused ~= '' or near then redis.call('PEXPIRE', KEYS[6], 3456000000) end\n"
    "return {admit and 1 or 0, refused, math.ceil(retry), math.floor(rtok), math.ceil(rfill),\n"
    "        math.floor(btok), math.ceil(bfill), used, mend, running, now, math.ceil(wait),\n"
    "        granted}\n";

/* A lease of bytes for a running download: debits the byte bucket (which may go into
 * debt: the caller then waits until the debt is repaid, so streams share the rate in
 * turn), adds the lease to the month, and keeps the download's concurrency entry alive.
 * KEYS: bytes, month, next month, concurrency. ARGV: 1 bytes/s, 2 byte burst, 3 amount,
 * 4 track month, 5 period end µs, 6 member ('' none), 7 member ttl ms.
 * Returns {wait µs, bytes left, now µs}. */
const char quota_lua_lease[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local bps, bburst, amount = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local wait, tok = 0, 0\n"
    "if bps > 0 then\n"
    "  local cap = bburst > 0 and bburst or bps\n"
    "  local h = redis.call('HMGET', KEYS[1], 't', 'ts')\n"
    "  tok = tonumber(h[1]) or cap\n"
    "  local ts = tonumber(h[2]) or now\n"
    "  if now > ts then tok = math.min(cap, tok + (now - ts) * bps / 1e6) end\n"
    "  tok = tok - amount\n"
    "  if tok < 0 then wait = -tok * 1e6 / bps end\n"
    "  redis.call('HSET', KEYS[1], 't', tok, 'ts', now)\n"
    "  redis.call('PEXPIRE', KEYS[1], math.ceil((cap - tok) * 1000 / bps) + 1000)\n"
    "end\n"
    "if ARGV[4] == '1' then\n"
    "  local mkey = now >= tonumber(ARGV[5]) and KEYS[3] or KEYS[2]\n"
    "  redis.call('INCRBY', mkey, amount)\n"
    "  redis.call('PEXPIRE', mkey, 3456000000)\n"
    "end\n"
    "if ARGV[6] ~= '' then\n"
    "  redis.call('ZADD', KEYS[4], 'XX', now + tonumber(ARGV[7]) * 1000, ARGV[6])\n"
    "end\n"
    "return {math.ceil(wait), math.floor(tok), now}\n";

/* The end of a request: unused lease goes back to the byte bucket and the month, the
 * download leaves the concurrency set, and a 304 gives its request token back.
 * KEYS: requests, bytes, month, next month, concurrency. ARGV: 1 rpm, 2 request burst,
 * 3 bytes/s, 4 byte burst, 5 unused bytes, 6 track month, 7 period end µs, 8 member,
 * 9 request tokens to give back (a 304's, or a pool's unused ones). */
const char quota_lua_end[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local rpm, rburst = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local bps, bburst, unused = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local back = tonumber(ARGV[9])\n"
    "if back > 0 and rpm > 0 then\n"
    "  local cap = rburst > 0 and rburst or rpm\n"
    "  local h = redis.call('HMGET', KEYS[1], 't', 'ts')\n"
    "  local tok = tonumber(h[1]) or cap\n"
    "  local ts = tonumber(h[2]) or now\n"
    "  if now > ts then tok = tok + (now - ts) * rpm / 60e6 end\n"
    "  redis.call('HSET', KEYS[1], 't', math.min(cap, tok + back), 'ts', now)\n"
    "end\n"
    "if unused > 0 and bps > 0 then\n"
    "  local cap = bburst > 0 and bburst or bps\n"
    "  local h = redis.call('HMGET', KEYS[2], 't', 'ts')\n"
    "  if h[1] then\n"
    "    local tok = tonumber(h[1])\n"
    "    local ts = tonumber(h[2]) or now\n"
    "    if now > ts then tok = tok + (now - ts) * bps / 1e6 end\n"
    "    redis.call('HSET', KEYS[2], 't', math.min(cap, tok + unused), 'ts', now)\n"
    "  end\n"
    "end\n"
    "if unused > 0 and ARGV[6] == '1' then\n"
    "  local mkey = now >= tonumber(ARGV[7]) and KEYS[4] or KEYS[3]\n"
    "  local v = tonumber(redis.call('GET', mkey) or '0')\n"
    "  if v > 0 then redis.call('SET', mkey, math.max(0, v - unused), 'KEEPTTL') end\n"
    "end\n"
    "if ARGV[8] ~= '' then redis.call('ZREM', KEYS[5], ARGV[8]) end\n"
    "return 1\n";

/* The gateways alive now: this one announces itself, entries older than ARGV[2] ms go.
 * KEYS: the registry set. ARGV: 1 instance, 2 horizon ms. Returns the count. */
const char quota_lua_live[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "redis.call('ZADD', KEYS[1], now, ARGV[1])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))\n"
    "redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)\n"
    "return redis.call('ZCARD', KEYS[1])\n";

/* Rebuilds a monthly counter Redis lost: adds the period's usage from PostgreSQL once per
 * period (the flag makes a second gateway's seed a no-op).
 * KEYS: month, its seeded flag. ARGV: 1 bytes. Returns 1 when it seeded. */
const char quota_lua_seed[] =
    "if redis.call('SET', KEYS[2], '1', 'NX', 'PX', 3456000000) then\n"
    "  redis.call('INCRBY', KEYS[1], tonumber(ARGV[1]))\n"
    "  redis.call('PEXPIRE', KEYS[1], 3456000000)\n"
    "  return 1\n"
    "end\n"
    "return 0\n";

/* A subject's state without changing it (for /-/v1/quota and `hubmeter quota show`).
 * KEYS: requests, bytes, month, next month, concurrency, events. ARGV: 1 rpm, 2 request
 * burst, 3 bytes/s, 4 byte burst, 5 max concurrent, 6 period end µs, 7 next period end µs.
 * Returns {requests left, requests refill µs, bytes left, bytes refill µs, month used,
 * month end µs, downloads running, now µs, near-limit events, refused by requests, by
 * monthly_bytes, by concurrency}. */
const char quota_lua_peek[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local rpm, rburst = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local bps, bburst, maxc = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local rtok, rfill, btok, bfill = 0, 0, 0, 0\n"
    "if rpm > 0 then\n"
    "  local cap = rburst > 0 and rburst or rpm\n"
    "  local h = redis.call('HMGET', KEYS[1], 't', 'ts')\n"
    "  rtok = tonumber(h[1]) or cap\n"
    "  local ts = tonumber(h[2]) or now\n"
    "  if now > ts then rtok = math.min(cap, rtok + (now - ts) * rpm / 60e6) end\n"
    "  rfill = (cap - rtok) * 60e6 / rpm\n"
    "end\n"
    "if bps > 0 then\n"
    "  local cap = bburst > 0 and bburst or bps\n"
    "  local h = redis.call('HMGET', KEYS[2], 't', 'ts')\n"
    "  btok = tonumber(h[1]) or cap\n"
    "  local ts = tonumber(h[2]) or now\n"
    "  if now > ts then btok = math.min(cap, btok + (now - ts) * bps / 1e6) end\n"
    "  bfill = (cap - btok) * 1e6 / bps\n"
    "end\n"
    "local mkey, mend = KEYS[3], tonumber(ARGV[6])\n"
    "if now >= mend then mkey = KEYS[4]; mend = tonumber(ARGV[7]) end\n"
    "local used = tonumber(redis.call('GET', mkey) or '0')\n"
    "local running = 0\n"
    "if maxc > 0 then running = redis.call('ZCOUNT', KEYS[5], now, '+inf') end\n"
    "local ev = redis.call('HMGET', KEYS[6], 'near_limit', 'refused_requests',\n"
    "                      'refused_monthly_bytes', 'refused_concurrency')\n"
    "return {math.floor(rtok), math.ceil(rfill), math.floor(btok), math.ceil(bfill), used, mend,\n"
    "        running, now, tonumber(ev[1]) or 0, tonumber(ev[2]) or 0, tonumber(ev[3]) or 0,\n"
    "        tonumber(ev[4]) or 0}\n";
