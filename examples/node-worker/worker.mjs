// A nestjs-durable Node worker (the published @dudousxd/nestjs-durable-transport-sqs) serving a
// cairn step group: `payments.charge-card` on the queue cairn created for it, answering on the
// queue cairn's engine reads results from. Both URLs come from `cairn queues --json` (README):
//
//   CAIRN_TASK_QUEUE_URLS   JSON object, step group -> tasks queue URL (`tasks` of that output)
//   PEER_RESULTS_QUEUE_URL  where peers answer (`peerResults`): the results queue, or in FIFO
//                           deployments the standard peer-results queue
//   CAIRN_ENDPOINT_URL      the local stack (moto); unset in AWS
//   PEER_GROUP              the group to serve (default payments.charge-card)
import { SQSClient } from '@aws-sdk/client-sqs';
import { FatalError } from '@dudousxd/nestjs-durable-core';
import { SqsTransport } from '@dudousxd/nestjs-durable-transport-sqs';

const group = process.env.PEER_GROUP ?? 'payments.charge-card';
const tasks = JSON.parse(process.env.CAIRN_TASK_QUEUE_URLS ?? '{}');
if (!tasks[group]) {
  console.error(`no tasks queue for group ${group} in CAIRN_TASK_QUEUE_URLS`);
  process.exit(2);
}
const resultsQueueUrl = process.env.PEER_RESULTS_QUEUE_URL;
if (!resultsQueueUrl) {
  console.error('PEER_RESULTS_QUEUE_URL is not set');
  process.exit(2);
}
const client = new SQSClient({
  region: process.env.AWS_REGION ?? 'us-east-1',
  endpoint: process.env.CAIRN_ENDPOINT_URL || undefined,
});
const transport = new SqsTransport({
  client,
  group,
  taskQueueUrl: () => tasks[group],
  resultsQueueUrl,
  // Short polls so the process stops promptly (tests, Ctrl-C).
  waitTimeSeconds: 1,
});

transport.handle('payments.charge-card', async (input, log) => {
  log.info('charging card', { orderId: input.orderId });
  if (input.card === '0000') {
    // Node's FatalError carries no `retryable` on the wire (runStepHandler copies only a
    // boolean `retryable` property) and runStepHandler drops `details`: set `retryable: false`
    // so cairn (and nestjs-durable's own engine) do not retry it.
    throw Object.assign(new FatalError('invalid card', 'invalid_card'), { retryable: false });
  }
  return { chargeId: `ch_${input.orderId}`, worker: 'node' };
});

console.log(`node peer serving ${group} on ${tasks[group]}`);
const stop = async () => {
  await transport.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
