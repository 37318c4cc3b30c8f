-- wrk script for bench/serve: POSTs a pool of pre-generated OIP request bodies in turn.
--
--   wrk -t1 -c16 -d5s -s bench/serve/oip.lua http://127.0.0.1:PORT -- POOL_FILE PATH
--
-- POOL_FILE holds one JSON request body per line (bench/serve/run writes it: every body a
-- different row, or 64 different rows), PATH is the URL path to POST to. The requests are
-- formatted once in init(); request() hands them out round-robin so that no body repeats back
-- to back (repeating one row would let the branch predictor learn the tree walks).
-- done() prints one line, "WRKJSON {...}", with the counts and the latency percentiles in
-- microseconds, for the driver to parse.

local requests_pool = {}
local pool_size = 0
local next_index = 0

function init(args)
  local pool_file = args[1]
  local path = args[2] or "/v2/models/machine-failure/infer"
  local f = assert(io.open(pool_file, "r"))
  local headers = { ["Content-Type"] = "application/json" }
  for line in f:lines() do
    if #line > 0 then
      pool_size = pool_size + 1
      requests_pool[pool_size] = wrk.format("POST", path, headers, line)
    end
  end
  f:close()
  assert(pool_size > 0, "empty request pool " .. pool_file)
end

function request()
  next_index = next_index + 1
  if next_index > pool_size then
    next_index = 1
  end
  return requests_pool[next_index]
end

local function percentiles(latency)
  local out = {}
  for _, p in ipairs({ 50, 90, 99, 99.9 }) do
    out[#out + 1] = string.format('"%s":%d', tostring(p), latency:percentile(p))
  end
  return "{" .. table.concat(out, ",") .. "}"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"duration_us":%d,"requests":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,"percentiles":%s}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max, percentiles(latency)))
end
