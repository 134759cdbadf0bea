-- wrk script: POST the images named in $DFSERVE_BENCH_IMAGES (colon-separated paths) in turn,
-- and print a one-line JSON summary at the end.
--
-- By default each body is the raw image (/v1/detect). With $DFSERVE_BENCH_KSERVE_INPUT set to
-- an input name, each body is instead a KServe v2 infer request in the binary tensor extension:
-- a JSON header naming that BYTES input (and the request parameters in
-- $DFSERVE_BENCH_KSERVE_PARAMS), then the image with its 4-byte length prefix. That
-- drives any KServe HTTP endpoint (dfserve's `dfserve` model, Triton, PyTriton) with the same
-- tool and the same images.
local paths = os.getenv("DFSERVE_BENCH_IMAGES") or ""
local kserve_input = os.getenv("DFSERVE_BENCH_KSERVE_INPUT")
if kserve_input == "" then
  kserve_input = nil -- in Lua an empty string is true
end
-- Optional request-level KServe parameters, as a JSON object (e.g. {"mode":"whole"}).
local kserve_params = os.getenv("DFSERVE_BENCH_KSERVE_PARAMS") or ""
local requests = {}

local function le32(n)
  return string.char(n % 256, math.floor(n / 256) % 256, math.floor(n / 65536) % 256, math.floor(n / 16777216) % 256)
end

-- Requests are built in init, not at load time: wrk adds the Host header only then, and
-- HTTP/1.1 servers such as uvicorn reject requests without one.
init = function(args)
  for p in string.gmatch(paths, "[^:]+") do
    local f = assert(io.open(p, "rb"))
    local image = f:read("*a")
    f:close()
    if kserve_input then
      local params = kserve_params ~= "" and ('"parameters":' .. kserve_params .. ",") or ""
      local header = string.format(
        '{%s"inputs":[{"name":"%s","shape":[1,1],"datatype":"BYTES","parameters":{"binary_data_size":%d}}]}',
        params, kserve_input, #image + 4)
      requests[#requests + 1] = wrk.format("POST", nil, {
        ["Content-Type"] = "application/octet-stream",
        ["Inference-Header-Content-Length"] = tostring(#header),
      }, header .. le32(#image) .. image)
    else
      requests[#requests + 1] = wrk.format("POST", nil, { ["Content-Type"] = "image/jpeg" }, image)
    end
  end
  assert(#requests > 0, "DFSERVE_BENCH_IMAGES names no files")
end
local i = 0

request = function()
  i = i % #requests + 1
  return requests[i]
end

done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    '{"requests": %d, "seconds": %.2f, "rps": %.1f, "p50_ms": %.2f, "p90_ms": %.2f, "p99_ms": %.2f, "errors": %d}\n',
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3, bad))
end
