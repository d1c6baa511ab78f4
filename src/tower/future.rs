//! [`ResponseFuture`]: the named response future of the authentication core.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

pin_project! {
    /// The response future of [`AuthService`](super::AuthService) (and of the scope and
    /// rate-limit layers): first the check, then the inner service's own future, polled in
    /// place, or the refusal.
    ///
    /// A request refused before any lookup (no credentials, a blocked client) allocates
    /// nothing. A check that has to wait (the key store, a shared limiter) is one boxed
    /// future, since [`KeyManager::verify`](crate::KeyManager::verify) returns an unnamed
    /// `async fn` future; the inner service's future is never boxed.
    pub struct ResponseFuture<F, Res> {
        #[pin]
        state: State<F, Res>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, Res> {
        // Yields the inner service's future, or the refusal.
        Checking { check: BoxFuture<Result<F, Res>> },
        Calling { #[pin] future: F },
        Refused { response: Option<Res> },
    }
}

impl<F, Res> ResponseFuture<F, Res> {
    /// Waits for `check`, then polls the future it gives or answers its refusal.
    pub(crate) fn checking(check: impl Future<Output = Result<F, Res>> + Send + 'static) -> Self {
        Self {
            state: State::Checking {
                check: Box::pin(check),
            },
        }
    }

    /// The inner service's future, checked already.
    #[cfg(feature = "axum")]
    pub(crate) fn calling(future: F) -> Self {
        Self {
            state: State::Calling { future },
        }
    }

    /// A refusal, ready at once.
    pub(crate) fn refused(response: Res) -> Self {
        Self {
            state: State::Refused {
                response: Some(response),
            },
        }
    }
}

impl<F, Res, E> Future for ResponseFuture<F, Res>
where
    F: Future<Output = Result<Res, E>>,
{
    type Output = Result<Res, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Checking { check } => {
                    let next = match ready!(check.as_mut().poll(cx)) {
                        Ok(future) => State::Calling { future },
                        Err(response) => State::Refused {
                            response: Some(response),
                        },
                    };
                    this.state.set(next);
                }
                StateProj::Calling { future } => return future.poll(cx),
                StateProj::Refused { response } => match response.take() {
                    Some(response) => return Poll::Ready(Ok(response)),
                    // A caller bug (tower's contract), never a request's doing.
                    None => panic!("ResponseFuture polled after it completed"),
                },
            }
        }
    }
}

impl<F, Res> fmt::Debug for ResponseFuture<F, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Checking { .. } => "checking",
            State::Calling { .. } => "calling",
            State::Refused { .. } => "refused",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use core::future::ready;

    use super::*;

    type Answer = Result<&'static str, ()>;

    #[tokio::test]
    async fn every_path_ends_in_one_answer() {
        let refused = ResponseFuture::<core::future::Ready<Answer>, _>::refused("refused");
        assert_eq!(refused.await, Ok("refused"));
        let passed = ResponseFuture::checking(async { Ok(ready(Answer::Ok("inner"))) });
        assert_eq!(passed.await, Ok("inner"));
        let failed = ResponseFuture::<core::future::Ready<Answer>, _>::checking(async {
            Err("refused after the check")
        });
        assert_eq!(failed.await, Ok("refused after the check"));
        let inner_error = ResponseFuture::checking(async { Ok(ready(Answer::Err(()))) });
        assert_eq!(inner_error.await, Err(()));
    }
}
