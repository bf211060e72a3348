//! Channels that send a call again when the server never saw it.
//!
//! A server that stops (a rolling update, a scale-down) sends GOAWAY on
//! each open connection and closes it once its calls are done. A tonic
//! [`Channel`] keeps handing calls to that connection until it has closed:
//! a call that raced the GOAWAY fails with CANCELLED ("connection
//! closed": it never left the client) or INTERNAL ("GoAway": the server
//! refused its stream unprocessed), though a new connection (through a
//! Kubernetes Service: to a ready replica) would have served it. gRPC's
//! own clients (grpc-go, grpc-java, grpc-core) send such calls again on
//! their own ("transparent retry"); tonic does not, so Roster's channels
//! to its peers do it here. Only calls the server cannot have processed
//! are sent again, so a write never happens twice.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tonic::body::Body;
use tonic::transport::Channel;
use tower::{Service, ServiceExt};

/// How many times a call is sent at most.
const ATTEMPTS: u32 = 5;

/// The pause before the second attempt; it doubles for each further one.
/// The first retry is quick: the channel reconnects at once.
const FIRST_PAUSE: Duration = Duration::from_millis(5);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A [`Channel`] that sends a unary call again, on a new connection, when
/// the connection it went to closed before the server saw it. Roster has
/// no client-streaming methods: a request body is one message, which is
/// kept until the call is answered.
#[derive(Clone, Debug)]
pub struct ResendingChannel {
    channel: Channel,
}

impl ResendingChannel {
    pub fn new(channel: Channel) -> Self {
        Self { channel }
    }
}

impl From<Channel> for ResendingChannel {
    fn from(channel: Channel) -> Self {
        Self::new(channel)
    }
}

impl Service<http::Request<Body>> for ResendingChannel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future =
        Pin<Box<dyn Future<Output = Result<http::Response<Body>, BoxError>> + Send + 'static>>;

    // Each attempt waits for the channel to be ready (reconnected) itself.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let channel = self.channel.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await?.to_bytes();
            let mut pause = FIRST_PAUSE;
            let mut attempt = 1;
            loop {
                let request = copy(&parts, body.clone());
                let mut channel = channel.clone();
                let result = match channel.ready().await {
                    Ok(ready) => ready.call(request).await,
                    Err(error) => Err(error),
                };
                match result {
                    Err(error) if attempt < ATTEMPTS && never_seen(&error) => {
                        tracing::debug!(
                            path = parts.uri.path(),
                            attempt,
                            error = format!("{error:#}"),
                            "the connection closed before the server saw the call; sending it again"
                        );
                        tokio::time::sleep(pause).await;
                        pause *= 2;
                        attempt += 1;
                    }
                    result => return result.map_err(BoxError::from),
                }
            }
        })
    }
}

/// A request like the one `parts` describe, with `body`.
fn copy(parts: &http::request::Parts, body: Bytes) -> http::Request<Body> {
    let mut request = http::Request::new(Body::new(Full::new(body)));
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    *request.extensions_mut() = parts.extensions.clone();
    request
}

/// Whether `error` says the server cannot have processed the call: the
/// client dropped it unsent as its connection closed, or the server
/// refused its stream (GOAWAY with no error, which covers only streams it
/// did not start, or REFUSED_STREAM).
fn never_seen(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(error) = source {
        if let Some(hyper) = error.downcast_ref::<hyper::Error>()
            && hyper.is_canceled()
        {
            return true;
        }
        if let Some(h2) = error.downcast_ref::<h2::Error>() {
            let reason = h2.reason();
            return (h2.is_go_away() && h2.is_remote() && reason == Some(h2::Reason::NO_ERROR))
                || reason == Some(h2::Reason::REFUSED_STREAM);
        }
        source = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_from_elsewhere_is_not_sent_again() {
        let error = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(!never_seen(&error));
        let reset = h2::Error::from(h2::Reason::INTERNAL_ERROR);
        assert!(!never_seen(&reset));
    }

    #[test]
    fn a_refused_stream_is_sent_again() {
        assert!(never_seen(&h2::Error::from(h2::Reason::REFUSED_STREAM)));
    }
}
