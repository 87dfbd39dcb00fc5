// nestjs-durable's own WorkflowEngine dispatching its steps over its SqsTransport, to whatever
// worker serves the step's queue (a cairn Worker, in cairn's tests). Starts one run of
// `checkout` per entry, waits for all to settle and prints one JSON line: each run with its
// step checkpoints. (One engine for all runs: engines sharing a results queue would take each
// other's results.)
//
//   node engine.mjs '{"<runId>": <input>, ...}'
//
// Queues come from the same variables cairn reads: CAIRN_TASK_QUEUE_URLS (JSON object, step
// group -> tasks queue URL; `cairn queues --json` prints it) and CAIRN_RESULTS_QUEUE_URL (where
// the worker answers and this engine polls). CAIRN_ENDPOINT_URL points the SDK at the local stack.
import { SQSClient } from '@aws-sdk/client-sqs';
import { InMemoryStateStore, WorkflowEngine } from '@dudousxd/nestjs-durable-core';
import { SqsTransport } from '@dudousxd/nestjs-durable-transport-sqs';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const taskQueueUrls = JSON.parse(env('CAIRN_TASK_QUEUE_URLS'));
const client = new SQSClient({
  region: process.env.AWS_REGION ?? 'us-east-1',
  endpoint: process.env.CAIRN_ENDPOINT_URL,
});
const transport = new SqsTransport({
  client,
  taskQueueUrl: (group) => {
    const url = taskQueueUrls[group];
    if (!url) throw new Error(`no tasks queue for group ${group} in CAIRN_TASK_QUEUE_URLS`);
    return url;
  },
  resultsQueueUrl: env('CAIRN_RESULTS_QUEUE_URL'),
  waitTimeSeconds: 1,
});
const store = new InMemoryStateStore();
const engine = new WorkflowEngine({ store, transport });

// One remote step, served by whichever worker polls the group's queue. Two retries, so a
// terminal failure (retryable: false) shows as one attempt.
engine.register('checkout', '1', async (ctx, input) => {
  const receipt = await ctx.step('payments.charge-card', input, { retries: 2, backoffMs: 100 });
  return { receipt };
});

const runs = JSON.parse(process.argv[2] ?? `{"nest-${Date.now()}": {"orderId": "o-1", "card": "4242"}}`);
const report = await Promise.all(
  Object.entries(runs).map(async ([runId, input]) => {
    await engine.start('checkout', input, runId);
    const settled = await engine.waitForRun(runId, { timeoutMs: 60_000, until: 'terminal' });
    const run = await store.getRun(runId);
    const steps = await store.listCheckpoints(runId);
    return { runId, status: run?.status ?? settled.status, output: run?.output, error: run?.error, steps };
  }),
);
console.log(JSON.stringify(report));
await transport.close();
process.exit(0);
