//! A model worker: one OS thread that owns a loaded model and serves jobs from a bounded queue
//! (or a pool of threads sharing one model and one queue, for models that serve several
//! requests at once).
//! Async callers get their answer through a oneshot channel; a caller that went away before its
//! job started (an HTTP client that disconnected) is skipped, so its work is freed. A panic in a
//! job is caught: its caller gets an error, and the worker is marked failed ([`ModelHealth`]),
//! refusing later jobs with a 503 until the model is launched again.

use super::health::ModelHealth;
use crate::{Error, Result};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::{mpsc, oneshot};

type Job<M> = Box<dyn FnOnce(&mut M) + Send>;

/// A thread owning a model of type `M`, fed by a bounded queue.
pub struct Worker<M: Send + 'static> {
    name: String,
    sender: Mutex<Option<SyncSender<Job<M>>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    in_flight: Arc<AtomicUsize>,
    /// Jobs the threads are running now (at most one per thread).
    running: Arc<AtomicUsize>,
    request_limit: Option<usize>,
    health: Arc<ModelHealth>,
}

/// Counts a request as in flight until dropped.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<M: Send + 'static> Worker<M> {
    /// Starts a worker thread named `name` that owns `model`. At most `queue_capacity` jobs wait;
    /// with `request_limit`, at most that many requests are queued or running at once.
    pub fn spawn(
        name: &str,
        model: M,
        queue_capacity: usize,
        request_limit: Option<usize>,
    ) -> Result<Self> {
        let mut model = Some(model);
        Self::spawn_pool(
            name,
            1,
            move || model.take().expect("one thread"),
            queue_capacity,
            request_limit,
        )
    }

    /// Starts `threads` threads named `name` that take jobs from one queue, each owning the
    /// model `model()` gives it (clones of one shared model: several jobs run at once). At
    /// most `queue_capacity` jobs wait behind the running ones; with `request_limit`, at most
    /// that many requests are queued or running at once.
    pub fn spawn_pool(
        name: &str,
        threads: usize,
        mut model: impl FnMut() -> M,
        queue_capacity: usize,
        request_limit: Option<usize>,
    ) -> Result<Self> {
        let (sender, receiver) = sync_channel::<Job<M>>(queue_capacity.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let running = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for _ in 0..threads.max(1) {
            let running_in_thread = running.clone();
            let receiver = receiver.clone();
            let mut model = model();
            let thread = std::thread::Builder::new()
                .name(format!("model-{name}"))
                .spawn(move || {
                    loop {
                        let job = receiver.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok(job) = job else { break };
                        running_in_thread.fetch_add(1, Ordering::SeqCst);
                        job(&mut model);
                        running_in_thread.fetch_sub(1, Ordering::SeqCst);
                    }
                    // The model is dropped here, on its own thread, freeing its memory.
                })
                .map_err(|e| Error::internal(format!("cannot start a worker thread: {e}")))?;
            handles.push(thread);
        }
        Ok(Worker {
            name: name.to_owned(),
            sender: Mutex::new(Some(sender)),
            threads: Mutex::new(handles),
            in_flight: Arc::new(AtomicUsize::new(0)),
            running,
            request_limit,
            health: Arc::default(),
        })
    }

    /// Whether this worker's compute has panicked (then it serves no more jobs).
    pub fn health(&self) -> &ModelHealth {
        &self.health
    }

    /// Requests queued or running on this worker now.
    pub fn load(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Requests the thread is running now (a job whose caller went away counts while it is
    /// being skipped).
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Requests queued behind the running one.
    pub fn waiting(&self) -> usize {
        self.load().saturating_sub(self.running())
    }

    /// Counts a new request in flight, refusing it (429) past `request_limits`.
    fn admit(&self) -> Result<InFlight> {
        let previous = self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(self.in_flight.clone());
        match self.request_limit {
            Some(limit) if previous >= limit => Err(Error::overloaded(format!(
                "Rate limit reached for the model. Request limit {limit} for the model: {}",
                self.name
            ))),
            _ => Ok(guard),
        }
    }

    /// Puts a job on the queue without waiting: a full queue is a 429, a stopped or failed
    /// worker a 503.
    fn enqueue(&self, job: Job<M>) -> Result<()> {
        if let Some(panic) = self.health.failure() {
            return Err(Error::not_ready(failed_message(&self.name, panic)));
        }
        let sender = self.sender.lock().expect("worker lock");
        let sender = sender
            .as_ref()
            .ok_or_else(|| Error::not_ready(format!("model {} is terminating", self.name)))?;
        match sender.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(Error::overloaded(format!(
                "the queue of model {} is full; retry later",
                self.name
            ))),
            Err(TrySendError::Disconnected(_)) => {
                Err(Error::not_ready(format!("model {} has stopped", self.name)))
            }
        }
    }

    /// Runs `f` on the worker thread and awaits its result. A full queue or a reached
    /// `request_limits` is an immediate 429; a stopped worker is a 503.
    pub async fn call<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut M) -> Result<R> + Send + 'static,
    {
        let guard = self.admit()?;
        let (tx, rx) = oneshot::channel::<Result<R>>();
        let (health, name) = (self.health.clone(), self.name.clone());
        self.enqueue(Box::new(move |model: &mut M| {
            let _guard = guard;
            if tx.is_closed() {
                return; // The caller is gone: do not spend compute on it.
            }
            if let Some(panic) = health.failure() {
                let _ = tx.send(Err(Error::not_ready(failed_message(&name, panic))));
                return;
            }
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(model)))
                .unwrap_or_else(|panic| {
                    Err(Error::internal(health.fail(&name, &panic_text(&panic))))
                });
            let _ = tx.send(result);
        }))?;
        rx.await.map_err(|_| {
            Error::internal(format!(
                "model {} stopped while serving the request",
                self.name
            ))
        })?
    }

    /// Runs `f` on the worker thread, which sends items into the returned channel as it goes
    /// (a token stream). When the receiver is dropped, `Sender::blocking_send` fails and `f`
    /// should stop; a job whose receiver is gone before it starts is skipped. A panic in `f`
    /// marks the worker failed and ends the stream with `on_panic(error)`; so does a job that
    /// finds the worker already failed.
    pub fn stream<T, F, P>(&self, capacity: usize, f: F, on_panic: P) -> Result<mpsc::Receiver<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut M, &mpsc::Sender<T>) + Send + 'static,
        P: FnOnce(Error) -> T + Send + 'static,
    {
        let guard = self.admit()?;
        let (tx, rx) = mpsc::channel::<T>(capacity.max(1));
        let (health, name) = (self.health.clone(), self.name.clone());
        self.enqueue(Box::new(move |model: &mut M| {
            let _guard = guard;
            if tx.is_closed() {
                return;
            }
            if let Some(panic) = health.failure() {
                let error = Error::not_ready(failed_message(&name, panic));
                let _ = tx.blocking_send(on_panic(error));
                return;
            }
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(model, &tx)));
            if let Err(panic) = outcome {
                let error = Error::internal(health.fail(&name, &panic_text(&panic)));
                let _ = tx.blocking_send(on_panic(error));
            }
        }))?;
        Ok(rx)
    }

    /// Closes the queue, lets queued jobs finish, and waits for the threads to exit, so that
    /// the model's memory is freed when this returns. Blocking: call off the async executor.
    pub fn shutdown(&self) {
        self.sender.lock().expect("worker lock").take();
        let threads = std::mem::take(&mut *self.threads.lock().expect("worker lock"));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

impl<M: Send + 'static> Drop for Worker<M> {
    fn drop(&mut self) {
        self.sender.lock().map(|mut s| s.take()).ok();
    }
}

pub(crate) use crate::error::panic_text;

/// What a request to a failed model is told (503).
pub(crate) fn failed_message(name: &str, panic: &str) -> String {
    format!(
        "Model {name} has failed (its computation panicked: {panic}) and serves no more \
         requests. Terminate the model and launch it again."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_jobs_in_order_on_its_own_thread() {
        let w = Worker::spawn("t", 0u32, 4, None).unwrap();
        let main = std::thread::current().id();
        let r = w
            .call(move |m: &mut u32| {
                *m += 1;
                Ok((*m, std::thread::current().id() != main))
            })
            .await
            .unwrap();
        assert_eq!(r, (1, true));
        w.shutdown();
        let e = w.call(|_m: &mut u32| Ok(())).await.unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::NotReady);
    }

    #[tokio::test]
    async fn request_limit_zero_is_429() {
        let w = Worker::spawn("t", (), 4, Some(0)).unwrap();
        let e = w.call(|_m: &mut ()| Ok(())).await.unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Overloaded);
        assert!(e.message().contains("Rate limit reached"));
    }

    #[tokio::test]
    async fn full_queue_is_429_and_panics_are_errors() {
        let w = Arc::new(Worker::spawn("t", (), 1, None).unwrap());
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        // One job running (blocked), one queued: the third is refused.
        let mut running = Vec::new();
        for _ in 0..2 {
            let w = w.clone();
            let rx = release_rx.clone();
            running.push(tokio::spawn(async move {
                w.call(move |_m: &mut ()| {
                    rx.lock().unwrap().recv().ok();
                    Ok(())
                })
                .await
            }));
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let e = w.call(|_m: &mut ()| Ok(())).await.unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Overloaded);
        release_tx.send(()).unwrap();
        release_tx.send(()).unwrap();
        for r in running {
            r.await.unwrap().unwrap();
        }
        let e = w
            .call(|_m: &mut ()| -> Result<()> { panic!("boom") })
            .await
            .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Internal);
        assert!(e.message().contains("boom"), "{e}");
        assert!(e.message().contains("launch it again"), "{e}");
        assert_eq!(w.health().failure(), Some("boom"));
        // The thread lives, but the failed worker refuses later jobs with a 503.
        let e = w.call(|_m: &mut ()| Ok(())).await.unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::NotReady);
        assert!(e.message().contains("Terminate the model"), "{e}");
        w.shutdown();
    }
}
