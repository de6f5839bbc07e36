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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};

/// The most rows one group commits: bounds a transaction's size and its memory.
const MAX_GROUP: usize = 512;

enum Message<T> {
    Row(T),
    /// Answered once every row queued before it is written (or its write has failed).
    Flush(oneshot::Sender<()>),
}

pub struct WriteBehind<T> {
    queue: mpsc::Sender<Message<T>>,
    /// Wakes a lingering writer before its time is up: a flush, or a full group waiting.
    hurry: Arc<Notify>,
    /// Rows handed over and not yet written (queued, or in the group being gathered).
    unwritten: Arc<AtomicUsize>,
    lingers: bool,
}

impl<T> Clone for WriteBehind<T> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            hurry: self.hurry.clone(),
            unwritten: self.unwritten.clone(),
            lingers: self.lingers,
        }
    }
}

/// Adds a message to the group being gathered: a row to write, or a flush to answer after it.
fn take<T>(message: Message<T>, group: &mut Vec<T>, waiting: &mut Vec<oneshot::Sender<()>>) {
    match message {
        Message::Row(row) => group.push(row),
        Message::Flush(done) => waiting.push(done),
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
        let hurry = Arc::new(Notify::new());
        let hurried = hurry.clone();
        let unwritten = Arc::new(AtomicUsize::new(0));
        let written = unwritten.clone();
        tokio::spawn(async move {
            let mut group = Vec::new();
            let mut waiting = Vec::new();
            while let Some(first) = next.recv().await {
                let until = tokio::time::Instant::now() + linger;
                take(first, &mut group, &mut waiting);
                loop {
                    while group.len() < MAX_GROUP {
                        match next.try_recv() {
                            Ok(message) => take(message, &mut group, &mut waiting),
                            Err(_) => break,
                        }
                    }
                    let hurried_or_full = !waiting.is_empty() || group.len() >= MAX_GROUP;
                    if hurried_or_full || tokio::time::Instant::now() >= until {
                        break;
                    }
                    // Sleeps rather than waiting on the queue: a waiting receiver is woken by
                    // every row, one cross-thread wake-up per request (a refresh's touch).
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => {}
                        _ = hurried.notified() => {}
                    }
                }
                if !group.is_empty() {
                    let rows = group.len();
                    write(std::mem::take(&mut group)).await;
                    written.fetch_sub(rows, Ordering::Relaxed);
                }
                for done in waiting.drain(..) {
                    let _ = done.send(());
                }
            }
        });
        WriteBehind {
            queue,
            hurry,
            unwritten,
            lingers: !linger.is_zero(),
        }
    }

    /// Queues `row`. Waits only when the queue is full (the database is slower than the
    /// requests): backpressure rather than unbounded memory. `Err(row)` if the writer is gone.
    pub async fn push(&self, row: T) -> Result<(), T> {
        // Counted before it is queued, so the writer never subtracts a row not yet counted.
        let unwritten = self.unwritten.fetch_add(1, Ordering::Relaxed) + 1;
        self.queue
            .send(Message::Row(row))
            .await
            .map_err(|e| match e.0 {
                Message::Row(row) => row,
                Message::Flush(_) => unreachable!("a row was sent"),
            })?;
        if self.lingers && unwritten >= MAX_GROUP {
            self.hurry.notify_one();
        }
        Ok(())
    }

    /// Returns once every row queued before this call has been written (or failed to be).
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.queue.send(Message::Flush(done)).await.is_ok() {
            self.hurry.notify_one();
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

    /// The lingering writer sleeps instead of waking for every row, so a backlog has to wake
    /// it: full groups are written at once, not a linger later (nor does the queue fill up and
    /// make requests wait).
    #[tokio::test]
    async fn a_lingering_writer_writes_full_groups_without_waiting_out_the_linger() {
        let written: Arc<Mutex<Vec<usize>>> = Arc::default();
        let sink = written.clone();
        let writer = WriteBehind::spawn_lingering(
            4 * MAX_GROUP,
            Duration::from_secs(60),
            move |group: Vec<usize>| {
                let sink = sink.clone();
                async move { sink.lock().unwrap().push(group.len()) }
            },
        );
        for n in 0..2 * MAX_GROUP + 1 {
            writer.push(n).await.unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while written.lock().unwrap().len() < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "full groups waited: {:?}",
                written.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(*written.lock().unwrap(), vec![MAX_GROUP, MAX_GROUP]);
        // The last row lingers until a flush.
        writer.flush().await;
        assert_eq!(*written.lock().unwrap(), vec![MAX_GROUP, MAX_GROUP, 1]);
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
