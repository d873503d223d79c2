-- wrk script: each thread sends its own share of pre-signed deliveries, in order.
-- Lines of the input file are "<Stripe-Signature>\t<body>".
local counter, threads = 0, {}
local requests, index = {}, 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local total = tonumber(args[2])
  local n = 0
  for line in io.lines(args[1]) do
    if n % total == id then
      local signature, body = line:match("^([^\t]+)\t(.*)$")
      table.insert(requests, wrk.format("POST", "/webhooks/stripe",
        {["Stripe-Signature"] = signature, ["Content-Type"] = "application/json"}, body))
    end
    n = n + 1
  end
end

function request()
  index = index + 1
  if index > #requests then index = 1 end  -- past the end: duplicates (answered 200)
  return requests[index]
end
