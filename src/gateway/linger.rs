//! Closing connections at shutdown so that clients receive the whole response: a response
//! counts as sent once hyper has written it into the socket, but bytes still in the
//! kernel's send queue are lost when the network namespace goes away with the process (a
//! container stopped after SIGTERM), so a client still reading a download would get a short
//! body and an error. While the gateway shuts down, each connection hyper is done with is
//! shut down (TLS `close_notify`, then FIN after the queued data) and closed with
//! `SO_LINGER`, on a blocking thread: the close returns once the client's side has
//! acknowledged everything, or at the timeout (the rest of `--shutdown-grace`); the
//! shutdown waits for these closes. Outside a shutdown a connection is simply dropped: the
//! process lives on, and the kernel delivers what is queued.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// A connection's I/O lent to hyper: handed back through the channel when hyper drops it
/// (the connection is over), for [`close_gracefully`].
pub(super) struct GiveBack<T> {
    io: Option<T>,
    back: Option<oneshot::Sender<T>>,
}

impl<T> GiveBack<T> {
    /// Lends `io`; the receiver gets it back when the wrapper is dropped.
    pub(super) fn new(io: T) -> (GiveBack<T>, oneshot::Receiver<T>) {
        let (tx, rx) = oneshot::channel();
        (
            GiveBack {
                io: Some(io),
                back: Some(tx),
            },
            rx,
        )
    }

    fn io(&mut self) -> io::Result<&mut T> {
        self.io
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl<T> Drop for GiveBack<T> {
    fn drop(&mut self) {
        if let (Some(io), Some(tx)) = (self.io.take(), self.back.take()) {
            let _ = tx.send(io);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for GiveBack<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut().io() {
            Ok(io) => Pin::new(io).poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GiveBack<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().io() {
            Ok(io) => Pin::new(io).poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().io() {
            Ok(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(T::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().io() {
            Ok(io) => Pin::new(io).poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().io() {
            Ok(io) => Pin::new(io).poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

/// A connection's stream that can give up its TCP socket once its own closing is sent.
pub(super) trait Tcp: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The TCP socket underneath.
    fn into_tcp(self) -> TcpStream;
}

impl Tcp for TcpStream {
    fn into_tcp(self) -> TcpStream {
        self
    }
}

impl Tcp for tokio_rustls::server::TlsStream<TcpStream> {
    fn into_tcp(self) -> TcpStream {
        self.into_inner().0
    }
}

/// Once hyper hands `back`'s connection back: when `shutting_down`, shuts it down (TLS
/// `close_notify`, FIN) and closes it waiting up to `within` for the client to acknowledge
/// every byte sent (module doc); else just drops it.
pub(super) async fn close<T: Tcp>(
    back: oneshot::Receiver<T>,
    shutting_down: impl Fn() -> bool,
    within: Duration,
) {
    let Ok(mut io) = back.await else { return };
    if !shutting_down() {
        return;
    }
    // An error (hyper shut it down already, the client is gone) changes nothing: the
    // close below waits only for what is still queued.
    let _ = tokio::time::timeout(within, io.shutdown()).await;
    let tcp = io.into_tcp();
    if socket2::SockRef::from(&tcp)
        .set_linger(Some(within))
        .is_err()
    {
        return;
    }
    let Ok(tcp) = tcp.into_std() else { return };
    // close(2) with SO_LINGER blocks (even on a non-blocking socket): off the runtime.
    let _ = tokio::task::spawn_blocking(move || drop(tcp)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt as _;

    /// The I/O comes back when the wrapper is dropped (hyper is done with it).
    #[tokio::test]
    async fn gives_back_what_it_lent() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let (mut lent, back) = GiveBack::new(ours);
        lent.write_all(b"response").await.unwrap();
        drop(lent);
        let mut ours = back.await.expect("handed back");
        ours.shutdown().await.unwrap();
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"response");
    }

    /// At shutdown the close waits until the client has everything: a response far larger
    /// than the socket buffers, read slowly, arrives whole although the connection is
    /// closed as soon as the last byte is queued.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_shutdown_close_waits_for_the_client() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let body = vec![7u8; 16 << 20];
        let n = body.len();
        let server = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let (mut lent, back) = GiveBack::new(s);
            lent.write_all(&body).await.unwrap();
            drop(lent);
            let t = std::time::Instant::now();
            close(back, || true, Duration::from_secs(30)).await;
            t.elapsed()
        });
        let mut c = TcpStream::connect(addr).await.unwrap();
        let mut got = 0usize;
        let mut buf = vec![0u8; 64 << 10];
        tokio::time::sleep(Duration::from_millis(300)).await;
        loop {
            let k = c.read(&mut buf).await.unwrap();
            if k == 0 {
                break;
            }
            got += k;
            if got > n / 2 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        assert_eq!(got, n);
        let waited = server.await.unwrap();
        // The close returned only once the client had acknowledged everything, after the
        // client's slow reads (the socket buffers hold a few MiB of the 16 MiB at most).
        assert!(waited > Duration::from_millis(50), "{waited:?}");
    }
}
