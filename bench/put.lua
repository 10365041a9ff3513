-- wrk script: PUT a small policy (placing nothing, the payload in its
-- metadata) under a unique key per request.
-- Keys cycle over KEYS distinct names so the state stays bounded.
local keys = tonumber(os.getenv("REMS_BENCH_KEYS") or "10000")
local counter = 0
local thread_id = 0
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end

function init(args)
  thread_id = tid or 0
end

request = function()
  counter = counter + 1
  local key = string.format("bench/t%d/k%d", thread_id, counter % keys)
  return wrk.format("PUT", "/v1/policies/" .. key,
    {["Content-Type"] = "application/json"},
    '{"placement":{"agents":["none"]},"services":[],' ..
    '"metadata":{"image":"bench:1","replicas":3,"n":' .. counter .. '}}')
end
