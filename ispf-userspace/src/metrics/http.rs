//! `/metrics` over HTTP/1.1 with hyper. Each connection is a task of its
//! own with a header deadline, a small request buffer and a lifetime limit,
//! under a connection cap: an idle connection, a slow one or a scraper that
//! stops reading costs its own task, never anyone else's scrape.

use std::{convert::Infallible, sync::Arc, time::Duration};

use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    header, Method, Request, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Semaphore};

/// Connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 256;
/// The whole exchange, a slow reader's included.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
const HEADER_DEADLINE: Duration = Duration::from_secs(5);

/// What renders the exposition (blocking: it reads maps).
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

pub async fn serve(listener: TcpListener, render: Render) {
    let cap = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let Ok(permit) = cap.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let render = render.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| respond(req, render.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_DEADLINE)
                .max_buf_size(16 * 1024)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
            drop(permit);
        });
    }
}

async fn respond(
    req: Request<Incoming>,
    render: Render,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let text = |status, body: String| {
        Response::builder()
            .status(status)
            .header(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_default()
    };
    if req.method() != Method::GET || req.uri().path() != "/metrics" {
        return Ok(text(
            StatusCode::NOT_FOUND,
            "ispf serves GET /metrics only\n".into(),
        ));
    }
    let body = tokio::task::spawn_blocking(move || render())
        .await
        .unwrap_or_else(|e| format!("# metrics unavailable: {e}\n"));
    Ok(text(StatusCode::OK, body))
}
