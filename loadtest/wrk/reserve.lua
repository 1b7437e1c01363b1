-- wrk -s reserve.lua: POST a one-unit reservation per request, each from a new user.
local threads, counter = {}, 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, '{"user_id":"t' .. tid .. "-" .. n .. '","quantity":1}')
end
