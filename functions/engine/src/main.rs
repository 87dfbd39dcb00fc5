//! The engine Lambda: consumes `<prefix>-results` and advances runs of the workflows it
//! hosts (here the demo's; put yours in their place). Wiring only.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    cairn_lambda::serve_engine(cairn_demo::workflows()).await
}
