//! Test support: an HTTP/1.1 server on loopback that follows a script, one behaviour per
//! connection (the last one from then on), for transport failures produced for real.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the server treats a connection, once it has read the request head.
#[derive(Clone, Copy, Debug)]
pub enum Behave {
    /// Closes without a byte of answer (the stale pooled-connection race).
    CloseSilently,
    /// Resets the connection (`SO_LINGER` 0).
    Reset,
    /// Never answers.
    Hang,
    /// Answers with bytes that are not HTTP.
    Garbage,
    /// Answers with this status and a two-byte body, closing the connection after.
    Status(u16),
}

/// Reads one request head (the body, if any, is left unread).
async fn read_head(stream: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A server on loopback treating its n-th connection as `script[n]` (the last one after);
/// returns its address and a count of the connections it accepted.
pub async fn server(script: Vec<Behave>) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let behave = script[n.min(script.len() - 1)];
            tokio::spawn(async move {
                read_head(&mut stream).await;
                match behave {
                    Behave::CloseSilently => drop(stream),
                    Behave::Reset => {
                        stream.set_zero_linger().unwrap();
                        drop(stream);
                    }
                    Behave::Hang => tokio::time::sleep(Duration::from_secs(30)).await,
                    Behave::Garbage => {
                        let _ = stream.write_all(b"NOT HTTP AT ALL\r\n\r\n").await;
                        let _ = stream.shutdown().await;
                    }
                    Behave::Status(status) => {
                        let head = format!(
                            "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                        );
                        let _ = stream.write_all(head.as_bytes()).await;
                        let _ = stream.shutdown().await;
                    }
                }
            });
        }
    });
    (addr, connections)
}

/// An address nobody listens on: bound, then released.
pub async fn refused() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}
