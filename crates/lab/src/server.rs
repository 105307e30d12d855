//! The server runner every simulator uses: binds a loopback address, serves a router wrapped
//! in fault injection, and shuts down on request.
//!
//! It must never listen on anything but a loopback address: simulators hold fake secrets and
//! answer anyone, so [`serve`] refuses any other address with an error.
//!
//! It has its own accept loop (rather than `axum::serve`) so that a request marked
//! [`DropConnection`] by the fault layer really closes the socket without a reply: the hyper
//! service returns an error and hyper tears the connection down.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt;

use crate::fault::{with_faults, DropConnection, FaultHandle};

/// Why a simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("refusing to listen on {0}: simulators bind loopback addresses only (127.0.0.1 or ::1)")]
    NotLoopback(SocketAddr),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The error a connection ends with when a fault asked for it to be dropped.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by fault injection")]
struct Dropped;

/// A simulator listening on a loopback port. Dropping it stops the server too.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl RunningServer {
    /// The address actually bound (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>` without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop accepting, close every open connection and wait for the accept loop to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Serve `router` on `addr` (port 0 picks a free port), with the faults of `faults` applied
/// to every request.
pub async fn serve(router: Router, faults: FaultHandle, addr: SocketAddr) -> Result<RunningServer, ServeError> {
    if !addr.ip().is_loopback() {
        return Err(ServeError::NotLoopback(addr));
    }
    let listener = TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| ServeError::Bind { addr, source })?;
    let app = with_faults(router, faults);
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, app, stopped));
    Ok(RunningServer { addr: bound, stop, task: Some(task) })
}

async fn accept_loop(listener: TcpListener, app: Router, mut stopped: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            changed = stopped.changed() => {
                if changed.is_err() || *stopped.borrow() {
                    break;
                }
            }
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a little, do not spin.
                        tracing::warn!(error = %e, "lab: accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let app = app.clone();
                        async move {
                            let resp = app.oneshot(req.map(Body::new)).await.unwrap_or_else(|e: Infallible| match e {});
                            if resp.extensions().get::<DropConnection>().is_some() {
                                Err(Dropped)
                            } else {
                                Ok(resp)
                            }
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;

    #[tokio::test]
    async fn refuses_non_loopback_addresses() {
        let err = serve(Router::new(), FaultHandle::default(), "0.0.0.0:0".parse().unwrap()).await;
        assert!(matches!(err, Err(ServeError::NotLoopback(_))));
        let err = serve(Router::new(), FaultHandle::default(), "192.0.2.1:0".parse().unwrap()).await;
        assert!(matches!(err, Err(ServeError::NotLoopback(_))));
    }

    #[tokio::test]
    async fn serves_and_shuts_down() {
        let router = Router::new().route("/hello", get(|| async { "hi" }));
        let server = serve(router, FaultHandle::default(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = server.addr();
        assert_ne!(addr.port(), 0);
        assert!(server.base_url().starts_with("http://127.0.0.1:"));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.ends_with("hi"), "{text}");
        server.shutdown().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
