//! Running a [`SimService`](super::SimService) (or any service of the same shape) on hyper 1
//! over a TCP listener, with graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long [`Server::shutdown`] lets open connections finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `service` on `listener` (HTTP/1.1, keep-alive) until `shutdown` completes, then stops
/// accepting and waits for the open connections to finish their current request.
///
/// Accept errors (e.g. too many open files) are reported by `tracing` and the loop goes on,
/// after a short pause, rather than ending the server.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    S: tower_service::Service<
            http::Request<Incoming>,
            Response = http::Response<Full<Bytes>>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "sim front: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Small request/response pairs: Nagle only adds latency.
                let _ = stream.set_nodelay(true);
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service.clone()));
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "sim front: connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("sim front: connections still open after the drain timeout");
    }
    Ok(())
}

/// A front running in the background on a loopback (or any) listener.
///
/// Dropping a `Server` stops it at once; [`Server::shutdown`] stops it gracefully.
///
/// ```no_run
/// # async fn run(service: tower_headroom::sim::front::SimService) -> std::io::Result<()> {
/// use tower_headroom::sim::front::Server;
///
/// let server = Server::bind("127.0.0.1:0".parse().unwrap(), service).await?;
/// println!("simulator listening on {}", server.url());
/// // ... point clients at server.url() ...
/// server.shutdown().await
/// # }
/// ```
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port) and starts serving `service` on the current
    /// tokio runtime.
    pub async fn bind<S>(addr: SocketAddr, service: S) -> io::Result<Server>
    where
        S: tower_service::Service<
                http::Request<Incoming>,
                Response = http::Response<Full<Bytes>>,
                Error = Infallible,
            > + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        Server::start(TcpListener::bind(addr).await?, service)
    }

    /// Starts serving `service` on an already bound `listener`, on the current tokio runtime.
    pub fn start<S>(listener: TcpListener, service: S) -> io::Result<Server>
    where
        S: tower_service::Service<
                http::Request<Incoming>,
                Response = http::Response<Full<Bytes>>,
                Error = Infallible,
            > + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let local_addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, service, async move {
            // A dropped sender also stops the server.
            let _ = stopped.await;
        }));
        Ok(Server {
            local_addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The base URL to give a client as its endpoint, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// Stops accepting connections, lets open ones finish their current request (at most
    /// 10 seconds) and waits for the server task to end.
    pub async fn shutdown(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
