-- wrk script used by bench/run for every HTTP workload.
--
--   wrk -s bench/load/pipeline.lua http://127.0.0.1:PORT/plaintext -- [DEPTH] [PATH]
--
-- DEPTH (default 16) requests for PATH (default: the URL's path) are written in one send,
-- and the next batch goes out when all DEPTH responses are back (TechEmpower's plaintext
-- method). With DEPTH 1 no request() function is defined, so wrk keeps its fast static
-- request path and the script only adds the summary line.
--
-- At the end one machine-readable line is printed:
--   WRK requests=N duration_us=N bytes=N connect=N read=N write=N status=N timeout=N
--       p50_us=N p99_us=N
-- where status counts responses with a status >= 400 (wrk's "Non-2xx or 3xx").

init = function(args)
   local depth = tonumber(args[1]) or 16
   if args[2] then
      wrk.path = args[2]
   end
   if depth > 1 then
      local batch = {}
      for i = 1, depth do
         batch[i] = wrk.format(nil, wrk.path)
      end
      local req = table.concat(batch)
      request = function()
         return req
      end
   end
end

done = function(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "WRK requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d " ..
      "timeout=%d p50_us=%d p99_us=%d\n",
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
      e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
