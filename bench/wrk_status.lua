-- Like wrk_detect.lua, and also counts responses by status (200 vs 429 vs other).
dofile("bench/wrk_detect.lua")
local counts = {}
local threads = {}

setup = function(thread)
  table.insert(threads, thread)
end

response = function(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

local base_done = done
done = function(summary, latency, requests)
  base_done(summary, latency, requests)
  local ok, busy, other = 0, 0, 0
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for status, n in pairs(c or {}) do
      if status == 200 then ok = ok + n elseif status == 429 then busy = busy + n else other = other + n end
    end
  end
  io.write(string.format('{"ok": %d, "rejected_429": %d, "other": %d}\n', ok, busy, other))
end

-- Expose each thread's counts to `done`; wrk_detect.lua's init builds the requests.
local base_init = init
init = function(args)
  base_init(args)
  counts = {}
  _G.counts = counts
end
