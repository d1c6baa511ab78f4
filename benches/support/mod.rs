//! What the benches share.

use std::task::{Context, Poll, Waker};

/// Polls a future that completes without waiting (the memory store's futures do, and so
/// does a cache hit's).
pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}
