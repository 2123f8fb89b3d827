-- Shared by the limiter scripts: server time and the effective GCRA parameters
-- (same arithmetic as gcra.rs: GcraParams::new).
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function params(rate, burst, margin, reserve)
  local interval = 1000000 / (rate * (1 - margin))
  local eff_burst = math.max(1, burst - reserve)
  return interval, (eff_burst - 1) * interval
end

local function fmt(x)
  return string.format('%.0f', x)
end
