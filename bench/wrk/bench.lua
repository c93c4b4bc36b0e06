-- wrk script of bench/run.sh.
--   BENCH_MODE=create  POST /orders with a one-item order
--   BENCH_MODE=get     GET /orders/{id}, ids drawn at random from BENCH_IDS
--                      (a file of existing ids, one a line)
--   anything else      the URL given to wrk, as it is
-- wrk calls request() for every request only when the script defines it, so
-- it is defined for the get mode alone; the others send one fixed request.
-- done() prints one line "BENCHJSON {...}" that bench.py reads.

local mode = os.getenv("BENCH_MODE") or "url"

if mode == "create" then
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = '{"order":[{"product":"latte","size":"small","quantity":1}]}'
end

if mode == "get" then
  local ids = {}
  local count = 0

  function init(args)
    for line in io.lines(os.getenv("BENCH_IDS")) do
      if #line > 0 then
        count = count + 1
        ids[count] = line
      end
    end
    if count == 0 then
      error("no ids in " .. tostring(os.getenv("BENCH_IDS")))
    end
    -- every thread draws its own sequence
    math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
  end

  function request()
    return wrk.format("GET", "/orders/" .. ids[math.random(count)])
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"max_us":%d,"mean_us":%.1f,"err_connect":%d,"err_read":%d,' ..
    '"err_write":%d,"err_timeout":%d,"err_status":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean,
    e.connect, e.read, e.write, e.timeout, e.status))
end
