//! `roster-echo`: the smallest tonic server that answers a unary call, the
//! ceiling that `roster-load` measures Roster against. One method,
//! `/roster.bench.Echo/Echo`, returns the message it was sent; nothing
//! else runs in the process (no auth, no logging, no metrics).
//!
//! Usage: `roster-echo 127.0.0.1:PORT`.

use std::convert::Infallible;
use std::task::{Context, Poll};

use anyhow::Context as _;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, StdError, http};
use tonic::server::{NamedService, UnaryService};
use tonic::{Request, Response, Status};

/// The echoed message: `message Echo { bytes payload = 1; }`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Echo {
    #[prost(bytes = "vec", tag = "1")]
    pub payload: Vec<u8>,
}

#[derive(Clone, Copy, Default)]
struct EchoServer;

impl NamedService for EchoServer {
    const NAME: &'static str = "roster.bench.Echo";
}

struct EchoMethod;

impl UnaryService<Echo> for EchoMethod {
    type Response = Echo;
    type Future = BoxFuture<Response<Echo>, Status>;

    fn call(&mut self, request: Request<Echo>) -> Self::Future {
        Box::pin(async move { Ok(Response::new(request.into_inner())) })
    }
}

impl<B> tonic::codegen::Service<http::Request<B>> for EchoServer
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() == "/roster.bench.Echo/Echo" {
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(EchoMethod, request).await)
            })
        } else {
            Box::pin(async move {
                Ok(Status::unimplemented("only /roster.bench.Echo/Echo is served").into_http())
            })
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .context("usage: roster-echo HOST:PORT")?;
    let addr = listen
        .parse()
        .with_context(|| format!("`{listen}` is not a HOST:PORT address"))?;
    tonic::transport::Server::builder()
        .add_service(EchoServer)
        .serve_with_shutdown(addr, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")?;
    Ok(())
}
