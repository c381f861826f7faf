// umi serve driven by the official `openai` npm client: what real clients do
// (models, chat and completions, whole and streamed, n, logprobs), errors as
// the client's typed exceptions, a stream aborted mid-way, and SIGTERM
// letting the stream in flight finish before the process exits 0.
//
//   node tests/openai_client/client.test.mjs PATH/TO/umi
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import OpenAI from 'openai';

const umi = process.argv[2] && (await import('node:path')).resolve(process.argv[2]);
if (!umi) throw new Error('usage: node client.test.mjs PATH/TO/umi');
const KEY = 'test-key-123';

// Starts `umi serve` on a free port; resolves once /health answers 200.
async function startServer(args = []) {
  const proc = spawn(umi, ['serve', '--port', '0', '--api-key', KEY, '-t', '2', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const port = await new Promise((resolve, reject) => {
    proc.stderr.on('data', (d) => {
      log += d;
      const m = /listening on http:\/\/[^:]+:(\d+)/.exec(log);
      if (m) resolve(Number(m[1]));
    });
    proc.on('exit', (code) => reject(new Error(`umi serve exited with ${code}: ${log}`)));
  });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; ++i) {
    const r = await fetch(`${base}/health`).catch(() => null);
    if (r && r.status === 200) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  return { proc, base, exited, log: () => log };
}

const server = await startServer();
after(() => server.proc.kill('SIGKILL'));
const client = new OpenAI({ apiKey: KEY, baseURL: `${server.base}/v1`, maxRetries: 0 });
const MODEL = 'tiny-shakespeare';

test('models list and retrieve', async () => {
  const list = await client.models.list();
  assert.deepEqual(list.data.map((m) => m.id), [MODEL]);
  const m = await client.models.retrieve(MODEL);
  assert.equal(m.id, MODEL);
  assert.equal(m.object, 'model');
});

test('chat completion, whole', async () => {
  const r = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: 'user', content: 'What light through yonder window breaks?' }],
    max_tokens: 16,
    temperature: 0,
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.ok(r.choices[0].message.content.length > 0);
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

test('chat completion, streamed, equals the whole one', async () => {
  const req = { model: MODEL, messages: [{ role: 'user', content: 'Good morrow' }], max_tokens: 20, temperature: 0 };
  const whole = await client.chat.completions.create(req);
  const stream = await client.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.delta.content ?? '';
      finish = c.finish_reason ?? finish;
    }
  }
  assert.equal(text, whole.choices[0].message.content);
  assert.equal(finish, whole.choices[0].finish_reason);
  assert.deepEqual(usage, whole.usage);
});

test('completions with n and logprobs', async () => {
  const r = await client.completions.create({ model: MODEL, prompt: 'ROMEO:', max_tokens: 5, n: 2, logprobs: 2, seed: 3 });
  assert.equal(r.choices.length, 2);
  for (const c of r.choices) {
    assert.equal(c.logprobs.tokens.join(''), c.text);
    assert.equal(c.logprobs.token_logprobs.length, c.logprobs.tokens.length);
    for (const lp of c.logprobs.token_logprobs) assert.ok(lp <= 0);
  }
  const chat = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Hark' }], max_tokens: 4, temperature: 0, logprobs: true, top_logprobs: 2,
  });
  const content = chat.choices[0].logprobs.content;
  assert.equal(content.length, chat.usage.completion_tokens);
  for (const t of content) assert.equal(t.top_logprobs[0].token, t.token);  // greedy
});

test('errors surface as the client\'s typed errors', async () => {
  await assert.rejects(client.chat.completions.create({ model: 'gpt-5', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e instanceof OpenAI.NotFoundError && e.status === 404 && e.code === 'model_not_found');
  await assert.rejects(client.completions.create({ model: MODEL, prompt: 'x', max_tokens: -1 }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'max_tokens');
  await assert.rejects(client.completions.create({ model: MODEL, prompt: 'x', n: 100 }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'n');
  await assert.rejects(client.completions.create({ model: MODEL, prompt: 'O Romeo, '.repeat(400) }),
    (e) => e instanceof OpenAI.BadRequestError && e.code === 'context_length_exceeded' && /prompt tokens fit/.test(e.message));
  const wrongKey = new OpenAI({ apiKey: 'nope', baseURL: `${server.base}/v1`, maxRetries: 0 });
  await assert.rejects(wrongKey.models.list(), (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
  // And the server still answers.
  const ok = await client.completions.create({ model: MODEL, prompt: 'KING:', max_tokens: 2 });
  assert.equal(ok.choices.length, 1);
});

test('a stream aborted mid-way is cancelled on the server', async () => {
  const stream = await client.completions.create({ model: MODEL, prompt: 'ROMEO:', max_tokens: 900, ignore_eos: true, stream: true });
  let n = 0;
  for await (const _ of stream) {
    if (++n === 3) break;  // leaving the loop aborts the request
  }
  const auth = { headers: { Authorization: `Bearer ${KEY}` } };
  let metrics = '';
  for (let i = 0; i < 100; ++i) {
    metrics = await (await fetch(`${server.base}/metrics`, auth)).text();
    if (/umi_requests_total\{model="tiny-shakespeare",finish_reason="cancelled"\} 1/.test(metrics)) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.match(metrics, /finish_reason="cancelled"\} 1/);
  assert.match(metrics, /umi_kv_blocks\{model="tiny-shakespeare",state="used"\} 0/);
});

test('SIGTERM: the stream in flight finishes, then the process exits 0', async () => {
  const s = await startServer(['--shutdown-grace', '60s']);
  const c = new OpenAI({ apiKey: KEY, baseURL: `${s.base}/v1`, maxRetries: 0 });
  const stream = await c.completions.create({ model: MODEL, prompt: 'ROMEO:', max_tokens: 300, ignore_eos: true, stream: true });
  let text = '';
  let finish = null;
  let signalled = false;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.text ?? '';
    finish = chunk.choices[0]?.finish_reason ?? finish;
    if (!signalled) {
      signalled = true;
      s.proc.kill('SIGTERM');
    }
  }
  assert.equal(finish, 'length');  // all 300 tokens, not cut short
  const { code } = await s.exited;
  assert.equal(code, 0, s.log());
  assert.match(s.log(), /stopped/);
});
