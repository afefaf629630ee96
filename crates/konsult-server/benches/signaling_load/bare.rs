//! The baseline: a bare WebSocket forwarder, this benchmark binary run
//! again as `--bare-forwarder --listen ADDR`.
//!
//! It does the least a signaling server must: Tokio (multi-thread) and
//! tokio-tungstenite with the WebSocket buffers Konsult uses (4 KiB read
//! buffer, no write buffer), `TCP_NODELAY` (unless `--nagle`), one task per
//! connection reading and an mpsc to a writer task. A connection's first text frame is a hello carrying a
//! pairing key (`{"type":"hello",…,"key":"…"}`), answered with
//! `{"type":"welcome"}`; the two connections with the same key are paired.
//! `{"type":"ping"}` (compared as bytes, not parsed) is answered with
//! `{"type":"pong"}`; every other text frame goes to the paired socket
//! unchanged, or nowhere before the pair is complete. No authentication, no
//! database, no validation, no rate limits, no logging.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Where a connection's peer is, once paired: the peer's outbound queue.
type Slot = Arc<Mutex<Option<UnboundedSender<Message>>>>;
/// Connections waiting for their pair: key → (its queue, its slot).
type Waiting = Arc<Mutex<HashMap<String, (UnboundedSender<Message>, Slot)>>>;

/// Serves until killed; `nagle`: leave Nagle's algorithm on (no
/// `TCP_NODELAY`), as Konsult's listener does.
pub fn serve(listen: &str, nagle: bool) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(listen).await?;
        let waiting: Waiting = Arc::default();
        loop {
            let (stream, _) = listener.accept().await?;
            if !nagle {
                let _ = stream.set_nodelay(true);
            }
            tokio::spawn(connection(stream, waiting.clone()));
        }
    })
}

async fn connection(stream: TcpStream, waiting: Waiting) {
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = unbounded_channel::<Message>();
    tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            if sink.send(message).await.is_err() {
                break;
            }
        }
    });
    let Some(Ok(Message::Text(hello))) = source.next().await else {
        return;
    };
    let Some(key) = serde_json::from_str::<serde_json::Value>(hello.as_str())
        .ok()
        .and_then(|v| v["key"].as_str().map(str::to_owned))
    else {
        return;
    };
    let mine: Slot = Arc::default();
    // The peer's slot, which holds our queue: emptied when we go.
    let peer_slot = {
        let mut waiting = waiting.lock().unwrap();
        match waiting.remove(&key) {
            Some((peer_tx, peer_slot)) => {
                *mine.lock().unwrap() = Some(peer_tx);
                *peer_slot.lock().unwrap() = Some(tx.clone());
                Some(peer_slot)
            }
            None => {
                waiting.insert(key.clone(), (tx.clone(), mine.clone()));
                None
            }
        }
    };
    // Paired before welcomed: once both sides have their welcome, each
    // one's frames reach the other.
    let _ = tx.send(Message::text(r#"{"type":"welcome"}"#));
    while let Some(Ok(message)) = source.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        if text.as_str() == r#"{"type":"ping"}"# {
            let _ = tx.send(Message::text(r#"{"type":"pong"}"#));
        } else if let Some(peer) = mine.lock().unwrap().as_ref() {
            let _ = peer.send(Message::Text(text));
        }
    }
    // Gone: no longer waiting; drop our hold on the peer's queue and, if
    // we came second, the peer's hold on ours.
    let mut waiting = waiting.lock().unwrap();
    if waiting
        .get(&key)
        .is_some_and(|(_, slot)| Arc::ptr_eq(slot, &mine))
    {
        waiting.remove(&key);
    }
    mine.lock().unwrap().take();
    if let Some(peer_slot) = peer_slot {
        peer_slot.lock().unwrap().take();
    }
}
