//! Logging set-up for the binaries.
//!
//! In Lambda: `lambda_runtime`'s subscriber, which follows the function's logging
//! configuration (JSON lines when its log format is JSON, level from `AWS_LAMBDA_LOG_LEVEL`,
//! else `RUST_LOG`, else `info`). Elsewhere: compact lines for people, filtered by `RUST_LOG`.

use std::io::IsTerminal as _;
use std::sync::Once;

/// Installs the global tracing subscriber (once per process; later calls do nothing).
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
            lambda_runtime::tracing::init_default_subscriber();
            return;
        }
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_target(false)
            // Colours for a terminal only (the dev loop pipes the lines through a prefixer).
            .with_ansi(std::io::stdout().is_terminal())
            .compact()
            .try_init();
    });
}
