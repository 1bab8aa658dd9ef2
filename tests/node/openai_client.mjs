// The npm `openai` package against the gateway: plain chat, streaming with the SDK's
// helpers, tools, and an error. Prints one JSON object with what it saw.
import OpenAI from "openai";

const client = new OpenAI({ apiKey: process.env.CHEAPLM_KEY, baseURL: process.env.CHEAPLM_BASE_URL, maxRetries: 0 });
const out = {};

const plain = await client.chat.completions.create({
  model: "claude-haiku-4.5",
  messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "hello [sim deltas=3]" }],
});
out.plain = { content: plain.choices[0].message.content, finish: plain.choices[0].finish_reason, usage: plain.usage };

const stream = client.chat.completions.stream({
  model: "claude-sonnet-4.5",
  messages: [{ role: "user", content: "weather [sim tools=2]" }],
  tools: [
    { type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } } },
    { type: "function", function: { name: "get_time", parameters: { type: "object", properties: {} } } },
  ],
  stream_options: { include_usage: true },
});
const final = await stream.finalChatCompletion();
out.tools = {
  calls: final.choices[0].message.tool_calls.map((c) => ({ id: c.id, name: c.function.name, arguments: c.function.arguments })),
  finish: final.choices[0].finish_reason,
  usage: final.usage,
};

let text = "";
const raw = await client.chat.completions.create({
  model: "claude-sonnet-4.5", stream: true, messages: [{ role: "user", content: "[sim deltas=5]" }],
});
for await (const chunk of raw) text += chunk.choices[0]?.delta?.content ?? "";
out.streamed = text;

try {
  await client.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "x" }] });
  out.error = null;
} catch (err) {
  out.error = { status: err.status, message: err.error?.message ?? err.message };
}
console.log(JSON.stringify(out));
