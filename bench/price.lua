-- wrk script: 5-line baskets with 2 codes for random members; BENCH_MODE=confirm adds a
-- unique external_id (each basket confirmed once; BENCH_PREFIX, if set, starts it: runs on one
-- database stay unique), price sends none.
local members = {}
local counter = 0
local thread_id = 0
local threads = {}
local confirm = os.getenv("BENCH_MODE") == "confirm"

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

local skus = {"CAB", "MUG", "TEA", "DESK", "LAMP", "BREAD", "SOAP"}
local cats = {"furniture", "kitchen", "food", "furniture", "home", "food", "home"}

function request()
  counter = counter + 1
  local m = members[math.random(#members)]
  local lines = {}
  for i = 1, 5 do
    local k = math.random(#skus)
    local cents = math.random(100, 9000)
    lines[i] = string.format(
      '{"sku":"%s","category":"%s","quantity":%d,"unit_price":"%d.%02d","tax_rate":"0.2"}',
      skus[k], cats[k], math.random(1, 4), math.floor(cents / 100), cents % 100)
  end
  local ext = ""
  if confirm then
    ext = string.format('"external_id":"%sb%d-%d",', os.getenv("BENCH_PREFIX") or "", thread_id, counter)
  end
  local body = string.format(
    '{%s"member":{"id":"%s"},"codes":["SAVE5","TENOFF"],"lines":[%s]}',
    ext, m, table.concat(lines, ","))
  return wrk.format(nil, nil, nil, body)
end

local shown = 0
function response(status, headers, body)
  if status >= 300 and shown < 3 then
    shown = shown + 1
    io.stderr:write(status .. " " .. body .. "\n")
  end
end
