//! Standard output for every command. A reader that stops early (`cairn dlq list results |
//! head -5`) closes the pipe; Rust ignores SIGPIPE, so the next write fails, and `println!`
//! would panic on it. Commands write through [`outln!`] instead, which returns that failure as
//! [`StdoutClosed`], and `main` ends quietly on it.

use std::fmt;
use std::io::{self, Write as _};

/// Writes one line to stdout (like `println!`), flushed; a closed pipe is [`StdoutClosed`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// The reader of stdout went away: nothing more can be shown, and nothing went wrong.
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed by its reader")]
pub struct StdoutClosed;

/// `args` and a newline on stdout, flushed.
pub fn line(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    let written = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    closed_or(written)
}

/// `bytes` on stdout as they are, flushed.
pub fn raw(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    closed_or(stdout.write_all(bytes).and_then(|()| stdout.flush()))
}

fn closed_or(written: io::Result<()>) -> anyhow::Result<()> {
    match written {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        other => Ok(other?),
    }
}
