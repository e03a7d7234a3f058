// Streams one chat completion through the Private Inference proxy with the official `openai` npm client and prints
// one JSON line: {id, content, status, content_encoding, request_body_b64, response_body_b64}.
//
// The exact bytes are captured with the SDK's own `fetch` option: the wrapper records the request body the SDK
// sends and tees the raw response body stream (de-chunked by fetch, before the SDK parses SSE), so the caller can
// recompute request_hash and response_hash exactly as the proxy signed them.
//
// Environment: PI_BASE_URL (e.g. http://127.0.0.1:8000/v1), PI_API_KEY (a proxy token), PI_PROMPT, PI_MODEL.
import OpenAI from 'openai';

const baseURL = process.env.PI_BASE_URL;
const apiKey = process.env.PI_API_KEY;
if (!baseURL || !apiKey) {
  console.error('stream_chat.mjs: set PI_BASE_URL and PI_API_KEY');
  process.exit(2);
}

let requestBody = null;
let rawChunks = [];
let rawDone = null;
let status = 0;
let contentEncoding = null;

async function recordingFetch(url, init) {
  if (typeof init?.body === 'string') {
    requestBody = Buffer.from(init.body, 'utf8');
  } else if (init?.body instanceof Uint8Array) {
    requestBody = Buffer.from(init.body);
  } else {
    throw new Error(`unexpected request body type: ${typeof init?.body}`);
  }
  const headers = new Headers(init.headers);
  headers.set('accept-encoding', 'identity');
  const res = await fetch(url, { ...init, headers });
  status = res.status;
  contentEncoding = res.headers.get('content-encoding');
  if (!res.body) return res;
  const [forSdk, forUs] = res.body.tee();
  rawChunks = [];
  rawDone = (async () => {
    const reader = forUs.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      rawChunks.push(Buffer.from(value));
    }
  })();
  return new Response(forSdk, { status: res.status, statusText: res.statusText, headers: res.headers });
}

const client = new OpenAI({ baseURL, apiKey, fetch: recordingFetch, maxRetries: 0 });
const { data: stream, response } = await client.chat.completions
  .create({
    model: process.env.PI_MODEL ?? 'smollm2',
    messages: [{ role: 'user', content: process.env.PI_PROMPT ?? 'Say hello.' }],
    max_tokens: 24,
    stream: true,
    stream_options: { include_usage: true },
  })
  .withResponse();

let id = null;
let content = '';
for await (const chunk of stream) {
  id ??= chunk.id;
  content += chunk.choices?.[0]?.delta?.content ?? '';
}
await rawDone;

process.stdout.write(
  JSON.stringify({
    id,
    content,
    status,
    response_status: response.status,
    content_encoding: contentEncoding,
    request_body_b64: requestBody.toString('base64'),
    response_body_b64: Buffer.concat(rawChunks).toString('base64'),
  }) + '\n',
);
