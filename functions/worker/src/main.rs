//! A worker Lambda for the demo steps: one function per tasks queue, same binary. Wiring only.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    cairn_lambda::serve_worker(cairn_demo::worker()).await
}
