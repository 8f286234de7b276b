//! stdout, the host's side of the stdio transport: one writer, one message a line. Every task
//! that has a message for the host sends it here, so lines never interleave.

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Lines waiting for stdout; a host that stops reading holds the senders here rather than
/// letting the bridge's memory grow.
const QUEUE: usize = 256;

/// Where messages for the host go.
#[derive(Clone)]
pub(crate) struct Out(mpsc::Sender<String>);

impl Out {
    /// Queues one compact JSON-RPC line (without its newline).
    pub async fn send(&self, line: String) {
        // Fails only once the writer has stopped: the host is gone and the bridge is ending.
        let _ = self.0.send(line).await;
    }
}

/// Starts the writer. It stops when `ending` fires, after writing what is already queued, and
/// fires `ending` itself when stdout cannot be written (the host closed its end).
pub(crate) fn start(ending: CancellationToken) -> (Out, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
    let writer = tokio::spawn(async move {
        let mut stdout = super::stdio::stdout();
        let mut batch = Vec::new();
        loop {
            let line = tokio::select! {
                line = rx.recv() => line,
                () = ending.cancelled() => rx.try_recv().ok(),
            };
            let Some(line) = line else { return };
            batch.clear();
            batch.extend_from_slice(line.as_bytes());
            batch.push(b'\n');
            // What else is ready goes in the same write.
            while let Ok(line) = rx.try_recv() {
                batch.extend_from_slice(line.as_bytes());
                batch.push(b'\n');
            }
            if stdout.write_all(&batch).await.is_err() || stdout.flush().await.is_err() {
                ending.cancel();
                return;
            }
        }
    });
    (Out(tx), writer)
}
