-- The wrk script every HTTP benchmark uses.
--
--   wrk -s bench/load.lua URL -- METHOD TOKEN BODY_FILE PATHS_FILE
--
-- METHOD is GET or POST; TOKEN is a bearer token or "-"; BODY_FILE holds the body
-- sent with every request or is "-"; PATHS_FILE lists request paths, one per line,
-- picked at random for each request, or is "-" to use URL's path.  When the run
-- ends, one line starting with WRK_JSON reports the exact figures (latencies in
-- microseconds) for bench/tools.py to read, instead of scraping wrk's summary.

local paths = nil
local body = nil
local method = "GET"

local function slurp(name)
  local f = assert(io.open(name, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

function init(args)
  method = args[1] or "GET"
  wrk.method = method
  if args[2] and args[2] ~= "-" then
    wrk.headers["Authorization"] = "Bearer " .. args[2]
  end
  if args[3] and args[3] ~= "-" then
    body = slurp(args[3])
    wrk.body = body
    wrk.headers["Content-Type"] = "application/json"
  end
  if args[4] and args[4] ~= "-" then
    paths = {}
    for line in io.lines(args[4]) do
      if #line > 0 then paths[#paths + 1] = line end
    end
  end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

function request()
  if paths then
    return wrk.format(method, paths[math.random(#paths)], nil, body)
  end
  return wrk.format()
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
