//! The engine Lambda: consumes `<prefix>-results` and advances runs of the workflows it
//! hosts (here the demo's; put yours in their place); long waits go through EventBridge
//! Scheduler when the template configures it. Wiring only.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    cairn_eventbridge::serve_engine(cairn_demo::workflows()).await
}
