-- wrk script: POST the images named in $DFSERVE_BENCH_IMAGES (colon-separated paths) to
-- /v1/detect in turn, and print a one-line JSON summary at the end.
local paths = os.getenv("DFSERVE_BENCH_IMAGES") or ""
local bodies = {}
for p in string.gmatch(paths, "[^:]+") do
  local f = assert(io.open(p, "rb"))
  bodies[#bodies + 1] = f:read("*a")
  f:close()
end
assert(#bodies > 0, "DFSERVE_BENCH_IMAGES names no files")
local i = 0

request = function()
  i = i % #bodies + 1
  return wrk.format("POST", nil, { ["Content-Type"] = "image/jpeg" }, bodies[i])
end

done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    '{"requests": %d, "seconds": %.2f, "rps": %.1f, "p50_ms": %.2f, "p90_ms": %.2f, "p99_ms": %.2f, "errors": %d}\n',
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3, bad))
end
