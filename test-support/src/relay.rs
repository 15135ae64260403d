//! A loopback UDP relay in front of a QUIC server that can be cut and restored: while cut,
//! the server looks to the peers behind the relay as a killed or unreachable one does
//! (packets go unanswered, no connection is closed).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::UdpSocket;

/// A relay to one address.
#[derive(Debug)]
pub struct Relay {
    /// Where peers reach the relay.
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
}

impl Relay {
    /// A relay on a loopback port to `to`.
    pub async fn start(to: SocketAddr) -> Self {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = front.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        tokio::spawn(relay(front, to, cut.clone()));
        Self { addr, cut }
    }

    /// Drops every packet, both ways, from now on.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
    }

    /// Passes packets again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::Relaxed);
    }
}

/// Passes each peer's datagrams to `to` from a socket of its own, and the answers back,
/// unless cut.
async fn relay(front: Arc<UdpSocket>, to: SocketAddr, cut: Arc<AtomicBool>) {
    let mut backs: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    while let Ok((n, from)) = front.recv_from(&mut buf).await {
        if cut.load(Ordering::Relaxed) {
            continue;
        }
        let back = match backs.get(&from) {
            Some(back) => back.clone(),
            None => {
                let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                back.connect(to).await.unwrap();
                let (answers, front, cut) = (back.clone(), front.clone(), cut.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65_536];
                    while let Ok(n) = answers.recv(&mut buf).await {
                        if !cut.load(Ordering::Relaxed) {
                            let _ = front.send_to(&buf[..n], from).await;
                        }
                    }
                });
                backs.insert(from, back.clone());
                back
            }
        };
        let _ = back.send(&buf[..n]).await;
    }
}
