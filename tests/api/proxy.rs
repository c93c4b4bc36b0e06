//! A TCP proxy the test controls, put between the service and a server of
//! this machine, so that an outage can be made without touching the server:
//! `cut` drops every connection through it and refuses new ones until
//! `restore`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct Proxy {
    /// `127.0.0.1:port`, to put in the service's settings instead of the
    /// server's address.
    pub address: String,
    down: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
    accepting: AbortHandle,
}

impl Proxy {
    /// Forwards to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let down = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let upstream = upstream.to_owned();
        let accepting = {
            let (down, links) = (down.clone(), links.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        continue;
                    };
                    if down.load(Ordering::SeqCst) {
                        // Refused: closed at once, as a dead server's port.
                        drop(client);
                        continue;
                    }
                    let upstream = upstream.clone();
                    let link = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    links.lock().unwrap().push(link.abort_handle());
                }
            })
            .abort_handle()
        };
        Self {
            address,
            down,
            links,
            accepting,
        }
    }

    /// A proxy in front of the server of database URL `url`
    /// (`postgres://user@host:port/name`), and the same URL through it.
    pub async fn before_database(url: &str) -> (Self, String) {
        let server = url
            .split('/')
            .nth(2)
            .and_then(|authority| authority.rsplit('@').next())
            .expect("a URL with a host");
        let proxy = Self::start(server).await;
        let through = url.replacen(server, &proxy.address, 1);
        (proxy, through)
    }

    /// Every connection through the proxy is dropped; new ones are refused.
    pub fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    pub fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accepting.abort();
    }
}
