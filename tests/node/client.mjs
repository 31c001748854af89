// The official OpenAI Node SDK against a live gateway: a streamed chat and a Responses API round trip.
// Run by tests/test_node_sdk.py with OPENAI_BASE_URL, OPENAI_API_KEY and MODEL set; prints what it got as JSON.
import OpenAI from "openai";

const client = new OpenAI({ maxRetries: 0, timeout: 30_000 });
const model = process.env.MODEL;

const stream = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "hello there" }],
  max_tokens: 6,
  stream: true,
  stream_options: { include_usage: true },
});
const chunks = [];
for await (const chunk of stream) chunks.push(chunk);

const weather = {
  type: "function",
  name: "get_weather",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
};
const first = await client.responses.create({ model, input: "weather in Paris?", tools: [weather] });
const call = first.output.find((item) => item.type === "function_call");
const second = await client.responses.create({
  model,
  previous_response_id: first.id,
  input: [{ type: "function_call_output", call_id: call.call_id, output: "21 C" }],
  tools: [weather],
});

let failure = null;
try {
  await client.responses.create({ model: "nope/nothing", input: "hi" });
} catch (error) {
  failure = { name: error.constructor.name, status: error.status, code: error.code, param: error.param };
}

console.log(
  JSON.stringify({
    chat: {
      roles: chunks.map((c) => c.choices[0]?.delta?.role ?? null),
      text: chunks.map((c) => c.choices[0]?.delta?.content ?? "").join(""),
      finish: chunks.map((c) => c.choices[0]?.finish_reason ?? null).filter((f) => f !== null),
      usage: chunks.at(-1).usage,
      model: chunks[0].model,
    },
    first: { id: first.id, status: first.status, call: { name: call.name, arguments: call.arguments } },
    second: { previous: second.previous_response_id, text: second.output_text, status: second.status },
    failure,
  }),
);
