-- wrk script: purchases shaped as tills send them (bench/earn.py --shapes).
-- BENCH_MEMBERS: a file of "id,external_id,card_number" lines.
-- BENCH_BY: id | external_id | card_number; BENCH_TIME: now | past; BENCH_LINES: 1 | 0;
-- BENCH_IDEM: 1 sends an Idempotency-Key header besides the event's external_id.
-- BENCH_PREFIX (default "s"): the events' external ids start with it (a new one per run
-- on the same program, so that a run never replays an earlier run's ids).
local members = {}
local counter = 0
local thread_id = 0
local threads = {}
local by, past, lines, idem, prefix

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  local field = ({id = 1, external_id = 2, card_number = 3})[os.getenv("BENCH_BY")]
  for line in io.lines(os.getenv("BENCH_MEMBERS")) do
    local parts = {}
    for p in string.gmatch(line, "[^,]+") do table.insert(parts, p) end
    table.insert(members, parts[field])
  end
  by = os.getenv("BENCH_BY")
  past = os.getenv("BENCH_TIME") == "past"
  lines = os.getenv("BENCH_LINES") == "1"
  idem = os.getenv("BENCH_IDEM") == "1"
  prefix = os.getenv("BENCH_PREFIX") or "s"
  thread_id = tid
  math.randomseed(tid * 7919)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
end

function request()
  counter = counter + 1
  local m = members[math.random(#members)]
  local cents = math.random(100, 5000)
  local amount = string.format("%d.%02d", math.floor(cents / 100), cents % 100)
  local body = string.format('{"type":"purchase","member":{"%s":"%s"},"external_id":"%s%d-%d","total":"%s"',
    by, m, prefix, thread_id, counter, amount)
  if past then
    -- the till's own clock: a month back, a different second each time
    local t = os.time() - 30 * 86400 - math.random(0, 86400)
    body = body .. ',"occurred_at":"' .. os.date("!%Y-%m-%dT%H:%M:%SZ", t) .. '"'
  end
  if lines then
    body = body .. string.format(
      ',"lines":[{"sku":"latte","category":"coffee","quantity":1,"unit_price":"%s"}]', amount)
  end
  body = body .. "}"
  local headers = nil
  if idem then
    -- wrk.format sends the headers given instead of wrk.headers, not besides them
    headers = {}
    for name, value in pairs(wrk.headers) do headers[name] = value end
    headers["Idempotency-Key"] = string.format("%sk%d-%d", prefix, thread_id, counter)
  end
  return wrk.format(nil, nil, headers, body)
end

local shown = 0
function response(status, headers, body)
  if status >= 300 and shown < 3 then
    shown = shown + 1
    io.stderr:write(status .. " " .. body .. "\n")
  end
end
