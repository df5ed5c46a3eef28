// The official OpenAI Node SDK against a running Agentry: only baseURL and the key change.
// Run by scripts/sdk-test.sh after the Python checks (part of `make test`); `openai` is
// installed by that script into a folder outside the source tree and found through NODE_PATH.
// Covers what Node clients break on first: auto-pagination, tools (JSON and streamed),
// Responses function calls and per-turn response ids. Exits non-zero on the first failure.

const OpenAI = require("openai");

const BASE = process.env.AGENTRY_URL;
const TOKEN = process.env.AGENTRY_TOKEN || "";
let passed = 0;

function check(name, cond, detail) {
  if (!cond) {
    console.log(`FAIL ${name}: ${JSON.stringify(detail)}`);
    console.log(`${passed} passed, 1 failed`);
    process.exit(1);
  }
  passed += 1;
  console.log(`ok   ${name}`);
}

async function api(method, path, body) {
  const res = await fetch(BASE + path, {
    method,
    headers: { "Content-Type": "application/json", ...(TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return [res.status, await res.json().catch(() => null)];
}

const WEATHER_CHAT = [{
  type: "function",
  function: {
    name: "get_weather", description: "Weather of a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
}];
const WEATHER_RESP = [{
  type: "function", name: "get_weather", description: "Weather of a city",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
}];

async function main() {
  const [status] = await api("POST", "/api/v1/agents", { name: "Node Bot", key: "node-bot", model: "mock/echo" });
  check("create agent", status === 201, status);
  const client = new OpenAI({ baseURL: `${BASE}/v1`, apiKey: TOKEN || "sk-unused", maxRetries: 0 });

  const models = [];
  for await (const m of client.models.list()) models.push(m.id);
  check("models.list shows the agent key", models.includes("node-bot"), models);

  // Auto-pagination follows `after` until has_more is false, each page once.
  let turn = await client.responses.create({ model: "node-bot", input: "page 1" });
  const first = turn;
  for (let n = 2; n <= 5; n += 1) {
    turn = await client.responses.create({ model: "node-bot", input: `page ${n}`, previous_response_id: turn.id });
  }
  const texts = [];
  for await (const item of client.responses.inputItems.list(turn.id, { limit: 2, order: "asc" })) {
    texts.push(item.content[0].text);
  }
  check("inputItems auto-pagination walks every page once",
    JSON.stringify(texts) === JSON.stringify(["page 1", "page 2", "page 3", "page 4", "page 5"]), texts);

  const again = await client.responses.retrieve(first.id);
  check("responses.retrieve returns that turn", again.output_text === "page 1" && first.id !== turn.id, again.output_text);

  // Client-side function tools on Chat Completions, whole and streamed.
  const ask = [{ role: "user", content: '/call get_weather {"city": "Paris"}' }];
  const c = await client.chat.completions.create({ model: "node-bot", messages: ask, tools: WEATHER_CHAT });
  const call = (c.choices[0].message.tool_calls || [])[0];
  check("chat.completions returns tool_calls", c.choices[0].finish_reason === "tool_calls" && call
    && call.function.name === "get_weather" && JSON.parse(call.function.arguments).city === "Paris", c);
  const c2 = await client.chat.completions.create({
    model: "node-bot",
    tools: WEATHER_CHAT,
    messages: [...ask, c.choices[0].message, { role: "tool", tool_call_id: call.id, content: '{"temp_c": 21}' }],
  });
  check("chat.completions takes tool results", c2.choices[0].message.content === 'tool get_weather said: {"temp_c": 21}', c2);

  const streamed = await client.chat.completions.create({ model: "node-bot", messages: ask, tools: WEATHER_CHAT, stream: true });
  let name = "";
  let args = "";
  for await (const chunk of streamed) {
    for (const d of (chunk.choices[0] && chunk.choices[0].delta.tool_calls) || []) {
      name += (d.function && d.function.name) || "";
      args += (d.function && d.function.arguments) || "";
    }
  }
  check("chat.completions streams tool_call deltas", name === "get_weather" && JSON.parse(args).city === "Paris", [name, args]);

  // Responses: function_call items, and the caller's output continues the turn.
  const r = await client.responses.create({ model: "node-bot", input: '/call get_weather {"city": "Oslo"}', tools: WEATHER_RESP });
  const fc = r.output.filter((o) => o.type === "function_call");
  check("responses returns function_call items", fc.length === 1 && JSON.parse(fc[0].arguments).city === "Oslo", r.output);
  const r2 = await client.responses.create({
    model: "node-bot",
    previous_response_id: r.id,
    tools: WEATHER_RESP,
    input: [{ type: "function_call_output", call_id: fc[0].call_id, output: '{"temp_c": 3}' }],
  });
  check("responses continue with function_call_output", r2.output_text === 'tool get_weather said: {"temp_c": 3}', r2.output_text);

  try {
    await client.responses.create({ model: "no-such-agent", input: "hi" });
    check("unknown agent raises NotFoundError", false, "no error");
  } catch (e) {
    check("unknown agent raises NotFoundError", e instanceof OpenAI.NotFoundError && e.code === "model_not_found", e.message);
  }

  console.log(`${passed} passed, 0 failed`);
}

main().catch((e) => {
  console.log(`FAIL unexpected error: ${e && e.stack}`);
  console.log(`${passed} passed, 1 failed`);
  process.exit(1);
});
