//! Helpers for the op modules' unit tests.

pub(crate) use crate::workflow::testing::{fire, ok, signal, start, TestRun as Sim};

/// Yields to the executor once, waking itself: stands in for real async I/O.
pub(crate) async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}
