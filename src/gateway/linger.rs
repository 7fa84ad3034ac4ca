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
//!
//! An acknowledgement is not delivery when a proxy stands between: a port forwarder that
//! ends with the container (podman's, Docker's userland proxy for loopback clients, a
//! sidecar) acknowledges what it buffered and loses it when it stops. So a connection that
//! wrote in the last [`CLIENT_CLOSE_WAIT`] first waits, after its FIN, for the client's
//! own close (reading and discarding until end of stream, as web servers' "lingering
//! close" does): a client closes once it has read the whole response and the FIN behind
//! it, whatever forwards it. The wait ends at that close, after [`CLIENT_CLOSE_WAIT`] of
//! silence (an idle keep-alive client does not close until it next uses the connection),
//! or at the timeout.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// At shutdown, a connection that wrote this recently waits for the client's close after
/// its FIN, and this much silence ends that wait (module doc). nginx's `lingering_timeout`
/// default.
const CLIENT_CLOSE_WAIT: Duration = Duration::from_secs(5);

/// A connection's I/O lent to hyper: handed back through the channel, with the time of its
/// last write, when hyper drops it (the connection is over), for [`close`].
pub(super) struct GiveBack<T> {
    io: Option<T>,
    back: Option<oneshot::Sender<(T, Instant)>>,
    last_write: Instant,
}

impl<T> GiveBack<T> {
    /// Lends `io`; the receiver gets it back when the wrapper is dropped.
    pub(super) fn new(io: T) -> (GiveBack<T>, oneshot::Receiver<(T, Instant)>) {
        let (tx, rx) = oneshot::channel();
        (
            GiveBack {
                io: Some(io),
                back: Some(tx),
                last_write: Instant::now(),
            },
            rx,
        )
    }

    /// Notes a write that moved bytes.
    fn wrote(&mut self, r: &Poll<io::Result<usize>>) {
        if matches!(r, Poll::Ready(Ok(n)) if *n > 0) {
            self.last_write = Instant::now();
        }
    }

    /// Calls `f` on the lent I/O (`NotConnected` once it was handed back).
    fn with<O>(&mut self, f: impl FnOnce(Pin<&mut T>) -> Poll<io::Result<O>>) -> Poll<io::Result<O>>
    where
        T: Unpin,
    {
        match self.io.as_mut() {
            Some(io) => f(Pin::new(io)),
            None => Poll::Ready(Err(io::Error::from(io::ErrorKind::NotConnected))),
        }
    }
}

impl<T> Drop for GiveBack<T> {
    fn drop(&mut self) {
        if let (Some(io), Some(tx)) = (self.io.take(), self.back.take()) {
            let _ = tx.send((io, self.last_write));
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for GiveBack<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().with(|io| io.poll_read(cx, buf))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GiveBack<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = this.with(|io| io.poll_write(cx, buf));
        this.wrote(&r);
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = this.with(|io| io.poll_write_vectored(cx, bufs));
        this.wrote(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(T::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().with(|io| io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().with(|io| io.poll_shutdown(cx))
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
/// `close_notify`, FIN), waits for the client's close if it wrote recently, and closes it
/// waiting for the client to acknowledge every byte sent, all within `within` (module
/// doc); else just drops it.
pub(super) async fn close<T: Tcp>(
    back: oneshot::Receiver<(T, Instant)>,
    shutting_down: impl Fn() -> bool,
    within: Duration,
) {
    close_waiting(back, shutting_down, within, CLIENT_CLOSE_WAIT).await;
}

/// [`close`] with the client-close wait as a parameter (tests).
async fn close_waiting<T: Tcp>(
    back: oneshot::Receiver<(T, Instant)>,
    shutting_down: impl Fn() -> bool,
    within: Duration,
    client_close_wait: Duration,
) {
    let Ok((mut io, last_write)) = back.await else {
        return;
    };
    if !shutting_down() {
        return;
    }
    let end = Instant::now() + within;
    // An error (hyper shut it down already, the client is gone) changes nothing: the
    // close below waits only for what is still queued.
    let _ = tokio::time::timeout(within, io.shutdown()).await;
    let mut tcp = io.into_tcp();
    if last_write.elapsed() < client_close_wait {
        wait_for_client_close(&mut tcp, end, client_close_wait).await;
    }
    let within = end.saturating_duration_since(Instant::now());
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

/// Reads and discards what the client still sends until it closes (end of stream or an
/// error), `silence` passes without a byte, or `end`. Whatever it sends is discarded: a
/// request after the shutdown gets no answer, and an unread byte at close(2) would reset
/// the connection.
async fn wait_for_client_close(tcp: &mut TcpStream, end: Instant, silence: Duration) {
    let mut buf = [0u8; 4096];
    loop {
        let until = end.min(Instant::now() + silence);
        match tokio::time::timeout_at(until, tcp.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => return,
            Ok(Ok(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The I/O comes back when the wrapper is dropped (hyper is done with it).
    #[tokio::test]
    async fn gives_back_what_it_lent() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let (mut lent, back) = GiveBack::new(ours);
        lent.write_all(b"response").await.unwrap();
        drop(lent);
        let (mut ours, _) = back.await.expect("handed back");
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
        drop(c);
        let waited = server.await.unwrap();
        // The close returned only once the client had acknowledged everything, after the
        // client's slow reads (the socket buffers hold a few MiB of the 16 MiB at most).
        assert!(waited > Duration::from_millis(50), "{waited:?}");
    }

    /// A forwarder between gateway and client (a container's port forwarder) acknowledges
    /// everything at once and delivers it slowly: the close waits for the client's own
    /// close, which comes only once the client has read the whole response.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_shutdown_close_waits_for_a_client_behind_a_forwarder() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let n = 4 << 20;
        let server = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let (mut lent, back) = GiveBack::new(s);
            lent.write_all(&vec![7u8; n]).await.unwrap();
            drop(lent);
            close(back, || true, Duration::from_secs(30)).await;
            std::time::Instant::now()
        });
        // The forwarder: takes everything up to the gateway's FIN at once, then hands it
        // to the client through a small pipe; it closes its side towards the gateway only
        // once the client has closed the pipe.
        let mut up = TcpStream::connect(addr).await.unwrap();
        let (mut to_client, mut client) = tokio::io::duplex(64 << 10);
        let forwarder = tokio::spawn(async move {
            let mut all = Vec::new();
            up.read_to_end(&mut all).await.unwrap();
            to_client.write_all(&all).await.unwrap();
            to_client.shutdown().await.unwrap();
            // The client closing its end: a read of the pipe ends.
            let _ = to_client.read(&mut [0u8; 1]).await;
            drop(up);
            all.len()
        });
        let mut got = 0usize;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let k = client.read(&mut buf).await.unwrap();
            if k == 0 {
                break;
            }
            got += k;
            tokio::time::sleep(Duration::from_millis(5)).await; // ~320 ms for 4 MiB
        }
        let client_done = std::time::Instant::now();
        drop(client);
        assert_eq!(got, n);
        assert_eq!(forwarder.await.unwrap(), n);
        let closed = server.await.unwrap();
        assert!(
            closed >= client_done,
            "the close returned {:?} before the client had read everything",
            client_done - closed
        );
    }

    /// The wait for the client's close is bounded by silence, and skipped for a connection
    /// that wrote nothing recently (an idle keep-alive client closes only when it next
    /// uses the connection).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn silent_and_idle_clients_do_not_hold_the_shutdown() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let wait = Duration::from_millis(400);
        // (pause after the last write before the close, expected wait for the client)
        for (idle, waits) in [(Duration::ZERO, true), (Duration::from_millis(600), false)] {
            let mut c = TcpStream::connect(addr).await.unwrap();
            let (s, _) = l.accept().await.unwrap();
            let (mut lent, back) = GiveBack::new(s);
            lent.write_all(b"response").await.unwrap();
            drop(lent);
            tokio::time::sleep(idle).await;
            let t = std::time::Instant::now();
            close_waiting(back, || true, Duration::from_secs(30), wait).await;
            let took = t.elapsed();
            if waits {
                assert!(took >= wait && took < Duration::from_secs(5), "{took:?}");
            } else {
                assert!(took < wait, "{took:?}");
            }
            // The client still has its response and the end of stream.
            let mut got = Vec::new();
            c.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"response");
        }
    }
}
