-- wrk script: purchases with unique external ids for random members of a file.
local members = {}
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(os.getenv("BENCH_MEMBERS")) do
    table.insert(members, line)
  end
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
  local body = string.format(
    '{"type":"purchase","member":{"id":"%s"},"external_id":"w%d-%d","total":"%d.%02d",' ..
    '"lines":[{"sku":"latte","category":"coffee","quantity":1,"unit_price":"%d.%02d"}]}',
    m, thread_id, counter, math.floor(cents / 100), cents % 100, math.floor(cents / 100), cents % 100)
  return wrk.format(nil, nil, nil, body)
end

local shown = 0
function response(status, headers, body)
  if status >= 300 and shown < 3 then
    shown = shown + 1
    io.stderr:write(status .. " " .. body .. "\n")
  end
end
