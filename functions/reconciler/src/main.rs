//! The reconciler Lambda: on a schedule, re-drives runs stuck with unsent commands. Wiring only.

// The reconciler future nests the SDK's deep futures (index pages inside a pass inside the
// runtime); computing its layout needs more than rustc's default query depth.
#![recursion_limit = "256"]

use cairn_lambda::aws::{sdk_config, AwsClients};
use cairn_lambda::config::Config;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    cairn_lambda::telemetry::init();
    let config = Config::from_env()?;
    let clients = AwsClients::new(&sdk_config(config.endpoint_url.as_deref()).await);
    let (store, transport) = (clients.store(&config), clients.transport(&config));
    let (store, transport, config) = (&store, &transport, &config);
    lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| async move {
        let report = cairn_lambda::reconciler::reconcile_stalled(store, transport, config).await?;
        Ok::<_, Error>(serde_json::json!(report))
    }))
    .await
}
