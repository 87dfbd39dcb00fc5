//! A worker Lambda for the demo steps: one function per tasks queue, same binary. Wiring only.

use cairn_lambda::aws::{sdk_config, AwsClients};
use cairn_lambda::config::Config;
use lambda_runtime::{service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cairn_lambda::telemetry::init();
    let config = Config::from_env()?;
    let clients = AwsClients::new(&sdk_config(config.endpoint_url.as_deref()).await);
    let worker = cairn_demo::worker().fifo(config.fifo);
    let (results, blobs) = (clients.transport(&config), clients.blobs(&config));
    let (worker, results, blobs) = (&worker, &results, &blobs);
    lambda_runtime::run(service_fn(move |event| async move {
        worker.run(results, blobs, event).await
    }))
    .await
}
