//! Bookkeeping writes taken off the request path and committed in groups: the audit trail's
//! events and the session records' "last used". A request hands its row to a queue and goes
//! on; one writer task takes everything queued, writes it in one transaction, and comes back for
//! more. Under load the groups grow on their own (no timer, no added delay when idle), so one
//! commit and one trip to the blocking pool serve many requests instead of one each.
//!
//! What is queued is written within one group's time (a few milliseconds) unless the process
//! dies first; readers on this instance call [`WriteBehind::flush`] so they see every row
//! handed over before them, and shutdown flushes too.

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

/// The most rows one group commits: bounds a transaction's size and its memory.
const MAX_GROUP: usize = 512;

enum Message<T> {
    Row(T),
    /// Answered once every row queued before it is written (or its write has failed).
    Flush(oneshot::Sender<()>),
}

pub struct WriteBehind<T> {
    queue: mpsc::Sender<Message<T>>,
}

impl<T> Clone for WriteBehind<T> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<T: Send + 'static> WriteBehind<T> {
    /// Starts the writer task: `write` commits one group (and deals with its own failure:
    /// counting, logging). At most `capacity` rows wait; past that, [`Self::push`] waits.
    pub fn spawn<W, F>(capacity: usize, write: W) -> Self
    where
        W: Fn(Vec<T>) -> F + Send + 'static,
        F: Future<Output = ()> + Send,
    {
        Self::spawn_lingering(capacity, Duration::ZERO, write)
    }

    /// As [`Self::spawn`], but a group also waits up to `linger` after its first row for more
    /// (unless a flush is asked for, or the group is full): for rows whose exact moment of
    /// writing nobody waits on, so that one commit serves a second's worth of them.
    pub fn spawn_lingering<W, F>(capacity: usize, linger: Duration, write: W) -> Self
    where
        W: Fn(Vec<T>) -> F + Send + 'static,
        F: Future<Output = ()> + Send,
    {
        let (queue, mut next) = mpsc::channel::<Message<T>>(capacity);
        tokio::spawn(async move {
            let mut group = Vec::new();
            let mut waiting = Vec::new();
            while let Some(first) = next.recv().await {
                let until = tokio::time::Instant::now() + linger;
                let mut message = Some(first);
                while let Some(m) = message.take() {
                    match m {
                        Message::Row(row) => group.push(row),
                        Message::Flush(done) => waiting.push(done),
                    }
                    if group.len() >= MAX_GROUP {
                        break;
                    }
                    message = match next.try_recv() {
                        Ok(m) => Some(m),
                        Err(_) if waiting.is_empty() && !linger.is_zero() => {
                            tokio::time::timeout_at(until, next.recv())
                                .await
                                .ok()
                                .flatten()
                        }
                        Err(_) => None,
                    };
                }
                if !group.is_empty() {
                    write(std::mem::take(&mut group)).await;
                }
                for done in waiting.drain(..) {
                    let _ = done.send(());
                }
            }
        });
        WriteBehind { queue }
    }

    /// Queues `row`. Waits only when the queue is full (the database is slower than the
    /// requests): backpressure rather than unbounded memory. `Err(row)` if the writer is gone.
    pub async fn push(&self, row: T) -> Result<(), T> {
        self.queue
            .send(Message::Row(row))
            .await
            .map_err(|e| match e.0 {
                Message::Row(row) => row,
                Message::Flush(_) => unreachable!("a row was sent"),
            })
    }

    /// Returns once every row queued before this call has been written (or failed to be).
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.queue.send(Message::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn rows_are_written_in_order_and_flush_waits_for_them() {
        let written: Arc<Mutex<Vec<Vec<u32>>>> = Arc::default();
        let sink = written.clone();
        let writer = WriteBehind::spawn(16, move |group: Vec<u32>| {
            let sink = sink.clone();
            async move {
                // A slow commit, so later rows pile up into one group.
                tokio::time::sleep(Duration::from_millis(20)).await;
                sink.lock().unwrap().push(group);
            }
        });
        for n in 0..10 {
            writer.push(n).await.unwrap();
        }
        writer.flush().await;
        let groups = written.lock().unwrap().clone();
        let all: Vec<u32> = groups.iter().flatten().copied().collect();
        assert_eq!(all, (0..10).collect::<Vec<_>>(), "every row, in order");
        assert!(groups.len() < 10, "rows were grouped: {groups:?}");
    }

    #[tokio::test]
    async fn a_lingering_group_collects_rows_until_its_time_is_up_or_a_flush() {
        let written: Arc<Mutex<Vec<Vec<u32>>>> = Arc::default();
        let sink = written.clone();
        let writer =
            WriteBehind::spawn_lingering(16, Duration::from_millis(300), move |group: Vec<u32>| {
                let sink = sink.clone();
                async move { sink.lock().unwrap().push(group) }
            });
        for n in 0..3 {
            writer.push(n).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(written.lock().unwrap().is_empty(), "still lingering");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(*written.lock().unwrap(), vec![vec![0, 1, 2]], "one group");
        // A flush does not wait for the linger.
        writer.push(3).await.unwrap();
        let started = std::time::Instant::now();
        writer.flush().await;
        assert!(started.elapsed() < Duration::from_millis(250));
        assert_eq!(written.lock().unwrap().last().unwrap(), &vec![3]);
    }

    #[tokio::test]
    async fn a_full_queue_makes_the_caller_wait_instead_of_dropping() {
        let written: Arc<Mutex<Vec<u32>>> = Arc::default();
        let sink = written.clone();
        let writer = WriteBehind::spawn(2, move |group: Vec<u32>| {
            let sink = sink.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                sink.lock().unwrap().extend(group);
            }
        });
        for n in 0..50 {
            writer.push(n).await.unwrap();
        }
        writer.flush().await;
        assert_eq!(written.lock().unwrap().len(), 50);
    }
}
