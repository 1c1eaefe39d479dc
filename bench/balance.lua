-- wrk script: balance reads of random members (bench/scale.py).
-- BENCH_MEMBERS: a file of "id,external_id,card_number" lines; BENCH_KEY: a members:read key.
local members = {}

function setup(thread)
  thread:set("tid", math.random(1, 1000000))
end

function init(args)
  for line in io.lines(os.getenv("BENCH_MEMBERS")) do
    table.insert(members, string.match(line, "^[^,]+"))
  end
  math.randomseed(tid)
  wrk.method = "GET"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
end

function request()
  local m = members[math.random(#members)]
  return wrk.format(nil, "/v1/programs/bench/members/" .. m .. "/balance")
end

local shown = 0
function response(status, headers, body)
  if status >= 300 and shown < 3 then
    shown = shown + 1
    io.stderr:write(status .. " " .. body .. "\n")
  end
end
