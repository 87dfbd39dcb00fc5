//! Logging set-up for the binaries: JSON lines in Lambda (CloudWatch parses them), filtered
//! by `RUST_LOG` (default `info`).

/// Installs the global tracing subscriber. Safe to call once per process.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    // Lambda stamps every line itself; elsewhere a human reads the output.
    let _ = if in_lambda {
        builder.json().without_time().try_init()
    } else {
        builder.compact().try_init()
    };
}
