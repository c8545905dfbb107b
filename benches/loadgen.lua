-- wrk script for benches/load-compare.sh: one AdmissionReview per request, a labelled
-- ConfigMap holding a ~5 KB AsyncAPI 3 document (the one scripts/loadgen.py sends).
-- LOADGEN_MODE=unique gives every request a different document (a number in it changes),
-- LOADGEN_MODE=repeat sends the same review every time (what GitOps re-applies send).
-- Answers other than 200 are counted by wrk ("Non-2xx"); the verdicts themselves are
-- checked by the soak (scripts/soak), not here, so that the generator stays fast.

local mode = os.getenv("LOADGEN_MODE") or "unique"
local counter = 0
local thread_id = 0

local function document(n, secure)
  local parts = { "asyncapi: 3.0.0\ninfo:\n  title: Orders\n  version: 1.0.0\n  x-request: ", n, "\nservers:\n" }
  for i = 0, 3 do
    parts[#parts + 1] = "  production-" .. i .. ":\n    host: kafka-" .. i .. ".example.com:9093\n    protocol: kafka-secure\n"
    if secure then
      parts[#parts + 1] = "    security:\n      - $ref: '#/components/securitySchemes/scram'\n"
    end
  end
  parts[#parts + 1] = "channels:\n"
  for i = 0, 11 do
    parts[#parts + 1] = "  orders" .. i .. ":\n    address: orders." .. i .. ".events\n    messages:\n      event:\n        payload:\n"
      .. "          type: object\n          properties:\n            id: {type: string}\n            amount: {type: number}\n"
  end
  parts[#parts + 1] = "components:\n  securitySchemes:\n    scram:\n      type: scramSha512\n"
  return table.concat(parts)
end

local function json_string(s)
  return '"' .. s:gsub('\\', '\\\\'):gsub('"', '\\"'):gsub('\n', '\\n') .. '"'
end

-- The review as text around the request's number, built once per verdict: per request
-- only the number changes (in the uid, the names and the document), so the generator
-- stays far faster than the servers it measures.
local function review_parts(secure)
  local marker = "\0N\0"
  local text = '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"load-' .. marker
    .. '","kind":{"group":"","version":"v1","kind":"ConfigMap"},"resource":{"group":"","version":"v1","resource":"configmaps"},"name":"orders-'
    .. marker .. '","namespace":"load","operation":"CREATE","userInfo":{"username":"load"},"object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"orders-'
    .. marker .. '","namespace":"load","labels":{"asyncapi-guard.io/document":"true"}},"data":{"asyncapi.yaml":'
    .. json_string(document(marker, secure)) .. '}},"oldObject":null,"dryRun":false}}'
  local parts, from = {}, 1
  while true do
    local at = text:find(marker, from, true)
    if not at then
      parts[#parts + 1] = text:sub(from)
      return parts
    end
    parts[#parts + 1] = text:sub(from, at - 1)
    from = at + #marker
  end
end

local function review(parts, n)
  local out = {}
  for i = 1, #parts - 1 do
    out[#out + 1] = parts[i]
    out[#out + 1] = n
  end
  out[#out + 1] = parts[#parts]
  return table.concat(out)
end

local headers = { ["Content-Type"] = "application/json", ["Host"] = "localhost" }
local fixed = nil
local secure_parts, insecure_parts = nil, nil

function setup(thread)
  thread_id = thread_id + 1
  thread:set("id", thread_id)
end

function init(args)
  secure_parts, insecure_parts = review_parts(true), review_parts(false)
  if mode == "repeat" then
    fixed = wrk.format("POST", "/validate", headers, review(secure_parts, 0))
  end
  -- Each run starts its numbers where load-compare.sh says (LOADGEN_START), so that a run
  -- never re-sends a document an earlier run sent: those the server's memo could know.
  counter = (id or 1) * 1000000000 + (tonumber(os.getenv("LOADGEN_START")) or 0)
end

function request()
  if fixed then
    return fixed
  end
  counter = counter + 1
  local parts = counter % 2 == 0 and secure_parts or insecure_parts
  return wrk.format("POST", "/validate", headers, review(parts, counter))
end
