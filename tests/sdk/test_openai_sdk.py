"""The official OpenAI Python SDK against a running Agentry: only base_url and the key change.

Run by scripts/sdk-test.sh (part of `make test`). Exits non-zero on the first failure and
prints 'N passed, 0 failed' at the end.
"""

import json
import os
import sys
import urllib.error
import urllib.request

import openai
from openai import OpenAI

BASE = os.environ["AGENTRY_URL"]
TOKEN = os.environ.get("AGENTRY_TOKEN", "")
passed = 0


def api(method, path, body=None):
    req = urllib.request.Request(BASE + path, method=method, data=None if body is None else json.dumps(body).encode())
    req.add_header("Content-Type", "application/json")
    if TOKEN:
        req.add_header("Authorization", "Bearer " + TOKEN)
    try:
        with urllib.request.urlopen(req) as res:
            return res.status, json.loads(res.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def check(name, cond, detail=""):
    global passed
    if not cond:
        print(f"FAIL {name}: {detail}")
        print(f"{passed} passed, 1 failed")
        sys.exit(1)
    passed += 1
    print(f"ok   {name}")


status, _ = api("POST", "/api/v1/agents", {"name": "Support Bot", "key": "support-bot", "instructions": "You are support.", "model": "mock/echo"})
check("create agent", status == 201, status)
api("POST", "/api/v1/agents", {"name": "Sleeping", "key": "sleeping", "status": "inactive"})

client = OpenAI(base_url=BASE + "/v1", api_key=TOKEN or "sk-unused", max_retries=0)

ids = [m.id for m in client.models.list()]
check("models.list shows the agent key", "support-bot" in ids and "sleeping" not in ids, ids)

r = client.responses.create(model="support-bot", input="How do I reset my password?")
check("responses.create", r.output_text == "How do I reset my password?" and r.id.startswith("resp_") and r.status == "completed", r)
check("usage", r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens, r.usage)

r2 = client.responses.create(model="support-bot", input=[{"role": "user", "content": [{"type": "input_text", "text": "And then?"}]}], previous_response_id=r.id)
check("multi-turn with previous_response_id", r2.previous_response_id == r.id and r2.output_text == "And then?", r2)
check("every turn has its own response id", r2.id != r.id and r2.conversation is not None and r2.conversation.id == r.conversation.id, (r.id, r2.id))
check("responses.retrieve returns that turn", client.responses.retrieve(r.id).output_text == "How do I reset my password?"
      and client.responses.retrieve(r2.id).output_text == "And then?", r.id)
branch = client.responses.create(model="support-bot", input="Another way?", previous_response_id=r.id)
check("previous_response_id of an earlier turn branches", branch.conversation.id != r.conversation.id
      and client.responses.retrieve(r2.id).output_text == "And then?"
      and [i.content[0].text for i in client.responses.input_items.list(branch.id, order="asc")]
      == ["How do I reset my password?", "Another way?"], branch)

with client.responses.stream(model="support-bot", input="stream with the sdk helper", instructions="Be brief.") as stream:
    deltas = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
    final = stream.get_final_response()
check("responses.stream helper", deltas == "stream with the sdk helper" and final.output_text == deltas, (deltas, final))

c = client.chat.completions.create(model="support-bot", messages=[{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hello chat"}])
check("chat.completions.create", c.choices[0].message.content == "hello chat" and c.usage.total_tokens > 0, c)

chunks = list(client.chat.completions.create(model="support-bot", messages=[{"role": "user", "content": "stream chat"}], stream=True, stream_options={"include_usage": True}))
text = "".join((ch.choices[0].delta.content or "") for ch in chunks if ch.choices)
check("chat.completions stream", text == "stream chat" and chunks[-1].usage is not None, text)

try:
    client.responses.create(model="no-such-agent", input="hi")
    check("unknown agent raises NotFoundError", False, "no error")
except openai.NotFoundError as e:
    check("unknown agent raises NotFoundError", e.code == "model_not_found", e)

try:
    client.responses.create(model="sleeping", input="hi")
    check("inactive agent raises BadRequestError", False, "no error")
except openai.BadRequestError as e:
    check("inactive agent raises BadRequestError", e.code == "agent_not_active", e)

try:
    client.responses.create(model="support-bot", input="hi", previous_response_id="resp_00000000000000000000000000000000")
    check("unknown previous_response_id raises NotFoundError", False, "no error")
except openai.NotFoundError as e:
    check("unknown previous_response_id raises NotFoundError", e.param == "previous_response_id", e)

status, v = api("POST", "/api/v1/agents/support-bot/versions", {"note": "v1"})
check("publish v1", status == 201, v)
api("PATCH", "/api/v1/agents/support-bot", {"instructions": "Changed after v1.", "model": "mock/echo"})
pinned = client.responses.create(model="support-bot", input="pinned", extra_body={"version": 1})
check("version pin via extra_body", pinned.output_text == "pinned", pinned)
try:
    client.responses.create(model="support-bot", input="x", extra_body={"version": 7})
    check("unknown version raises NotFoundError", False, "no error")
except openai.NotFoundError as e:
    check("unknown version raises NotFoundError", e.param == "version", e)

# Client-side function tools: the model's calls come back to the caller, who runs them and
# sends the results (the scripted mock calls tools when a message reads "/call NAME {json}").
WEATHER_CHAT = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
WEATHER_RESP = [{"type": "function", "name": "get_weather", "description": "Weather of a city",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
ask = [{"role": "user", "content": '/call get_weather {"city": "Paris"}'}]
c = client.chat.completions.create(model="support-bot", messages=ask, tools=WEATHER_CHAT, tool_choice="auto")
call = (c.choices[0].message.tool_calls or [None])[0]
check("chat.completions returns tool_calls", c.choices[0].finish_reason == "tool_calls" and call is not None
      and call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}, c)
follow = ask + [c.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'}]
c2 = client.chat.completions.create(model="support-bot", messages=follow, tools=WEATHER_CHAT)
check("chat.completions takes tool results", c2.choices[0].message.content == 'tool get_weather said: {"temp_c": 21}', c2)

calls = {}
for chunk in client.chat.completions.create(model="support-bot", messages=ask, tools=WEATHER_CHAT, stream=True):
    for d in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
        entry = calls.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
        entry["id"] = d.id or entry["id"]
        entry["name"] += (d.function.name or "") if d.function else ""
        entry["arguments"] += (d.function.arguments or "") if d.function else ""
check("chat.completions streams tool_call deltas", list(calls.values()) and calls[0]["name"] == "get_weather"
      and json.loads(calls[0]["arguments"]) == {"city": "Paris"} and calls[0]["id"], calls)

r = client.responses.create(model="support-bot", input='/call get_weather {"city": "Oslo"}', tools=WEATHER_RESP)
fc = [o for o in r.output if o.type == "function_call"]
check("responses returns function_call items", len(fc) == 1 and fc[0].name == "get_weather"
      and json.loads(fc[0].arguments) == {"city": "Oslo"}, r)
r2 = client.responses.create(model="support-bot", previous_response_id=r.id, tools=WEATHER_RESP,
                             input=[{"type": "function_call_output", "call_id": fc[0].call_id, "output": '{"temp_c": 3}'}])
check("responses continue with function_call_output", r2.output_text == 'tool get_weather said: {"temp_c": 3}', r2)

done_args = None
with client.responses.stream(model="support-bot", input='/call get_weather {"city": "Rome"}', tools=WEATHER_RESP) as stream:
    for event in stream:
        if event.type == "response.function_call_arguments.done":
            done_args = event.arguments
    final = stream.get_final_response()
check("responses stream function calls", done_args is not None and json.loads(done_args) == {"city": "Rome"}
      and any(o.type == "function_call" for o in final.output), (done_args, final))

j = client.chat.completions.create(model="support-bot", messages=[{"role": "user", "content": "plain words"}],
                                   response_format={"type": "json_object"}, stop=None, seed=1, logit_bias={})
check("response_format and neutral values accepted", json.loads(j.choices[0].message.content) == {"echo": "plain words"}, j)

turn = client.responses.create(model="support-bot", input="page 1")
for n in range(2, 6):
    turn = client.responses.create(model="support-bot", input=f"page {n}", previous_response_id=turn.id)
pages = client.responses.input_items.list(turn.id, limit=2, order="asc")
texts = [item.content[0].text for item in pages]  # auto-pagination: follows `after` until has_more is false
check("input_items auto-pagination walks every page once", texts == [f"page {n}" for n in range(1, 6)], texts)

print(f"{passed} passed, 0 failed")
