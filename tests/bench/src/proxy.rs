//! A minimal reverse proxy on the gateway's own HTTP stack (tokio, hyper's
//! HTTP/1 server, hyper-util's pooled client), for measuring by hand what
//! one Rust hop costs before any gateway work: it reads the whole request,
//! sends it unchanged to the upstream, reads the whole answer and returns
//! it. No routing, no JSON, no plugin, no log. Like the gateway it serves
//! one connection start to end on the thread that accepted it (a
//! single-threaded runtime per thread), with an upstream pool per thread.
//! Not one of the report's hops: see tests/bench/NOTES.md.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type Upstream = Client<HttpConnector, Full<Bytes>>;

async fn forward(
    request: Request<Incoming>,
    client: Upstream,
    upstream: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let bad_gateway = || {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::BAD_GATEWAY;
        response
    };
    let (mut parts, body) = request.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return Ok(bad_gateway());
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("http://{upstream}{path}").parse::<Uri>() else {
        return Ok(bad_gateway());
    };
    parts.uri = uri;
    let Ok(response) = client
        .request(Request::from_parts(parts, Full::new(body)))
        .await
    else {
        return Ok(bad_gateway());
    };
    let (parts, body) = response.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return Ok(bad_gateway());
    };
    Ok(Response::from_parts(parts, Full::new(body)))
}

async fn serve_thread(listener: std::net::TcpListener, upstream: SocketAddr) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Upstream = Client::builder(TokioExecutor::new()).build(connector);
    loop {
        // As the fake upstream does: a failing accept (out of descriptors)
        // is retried after a pause rather than in a busy loop.
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                eprintln!("accept failed: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| forward(request, client.clone(), upstream));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Serves on `threads` threads until the process is killed. The threads
/// share one listening socket (the gateway gives each its own with
/// `SO_REUSEPORT`; for 32 keep-alive connections accepted once, the same).
pub fn serve(listen: SocketAddr, upstream: SocketAddr, threads: usize) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    eprintln!("minimal proxy on {listen} to {upstream}");
    let mut handles = Vec::new();
    for _ in 0..threads.max(1) {
        let listener = listener.try_clone()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        handles.push(std::thread::spawn(move || {
            runtime.block_on(serve_thread(listener, upstream));
        }));
    }
    for handle in handles {
        let _ = handle.join();
    }
    Ok(())
}
