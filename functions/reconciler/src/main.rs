//! The reconciler Lambda: on a schedule, re-drives runs stuck with unsent commands. Wiring only.

// The reconciler future nests the SDK's deep futures (index pages inside a pass inside the
// runtime); computing its layout needs more than rustc's default query depth.
#![recursion_limit = "256"]

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    cairn_lambda::serve_reconciler().await
}
