//! A model's ONNX Runtime sessions, built when the load needs them.
//!
//! Every session holds its own copy of the optimised graph and its arena, so
//! a session that never runs is memory spent for nothing: `serve` loads every
//! model under `models/`, and with two sessions each from the start, an idle
//! server held 375 MiB where one session each held 282 (issue #29). Loading
//! builds one unoptimised session to check the graph against the manifest
//! (`runtime::inspect_session`), then lets it go; the first batch builds the first session to keep, and the others are
//! built the first time every built session is busy, which only happens for
//! a model under load.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError, TryLockError};

use ort::session::Session;

use crate::runtime::{self, RuntimeError, SessionOptions};

pub(crate) struct SessionPool {
    onnx: PathBuf,
    options: SessionOptions,
    /// Filled front to back, never emptied.
    slots: Box<[OnceLock<Mutex<Session>>]>,
    /// Held while a session is being built, so two busy callers don't build two.
    building: Mutex<()>,
    /// Set when building a further session failed: the pool stays at what it has.
    full: AtomicBool,
    next: AtomicUsize,
}

impl SessionPool {
    /// An empty pool of at most `size` sessions of the graph at `onnx`.
    pub(crate) fn new(onnx: PathBuf, options: SessionOptions, size: usize) -> SessionPool {
        SessionPool {
            onnx,
            options,
            slots: (0..size.max(1)).map(|_| OnceLock::new()).collect(),
            building: Mutex::new(()),
            full: AtomicBool::new(false),
            next: AtomicUsize::new(0),
        }
    }

    /// Sessions built so far.
    pub(crate) fn created(&self) -> usize {
        self.built().count()
    }

    fn built(&self) -> impl Iterator<Item = &Mutex<Session>> {
        self.slots.iter().map_while(OnceLock::get)
    }

    /// A free session; a new one when every built session is busy and the
    /// pool may grow; else wait for one, handed out in turn. Fails only when
    /// not even the first session can be built.
    pub(crate) fn acquire(&self) -> Result<MutexGuard<'_, Session>, RuntimeError> {
        if let Some(guard) = self.try_free() {
            return Ok(guard);
        }
        if self.created() == 0 {
            return self.build_first();
        }
        if let Some(guard) = self.grow() {
            return Ok(guard);
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.created().max(1);
        let session = self.built().nth(i).or_else(|| self.built().next());
        match session {
            Some(s) => Ok(s.lock().unwrap_or_else(PoisonError::into_inner)),
            None => self.build_first(),
        }
    }

    fn try_free(&self) -> Option<MutexGuard<'_, Session>> {
        for session in self.built() {
            match session.try_lock() {
                Ok(guard) => return Some(guard),
                // A poisoned lock only means another batch panicked mid-run;
                // the session itself is still usable.
                Err(TryLockError::Poisoned(p)) => return Some(p.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        None
    }

    /// The first batch waits for the first session, built once.
    fn build_first(&self) -> Result<MutexGuard<'_, Session>, RuntimeError> {
        let _building = self.building.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(first) = self.slots[0].get() {
            return Ok(first.lock().unwrap_or_else(PoisonError::into_inner));
        }
        let session = runtime::create_session(&self.onnx, self.options)?;
        let first = self.slots[0].get_or_init(|| Mutex::new(session));
        Ok(first.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Build the next session if there is room and nobody else is building.
    fn grow(&self) -> Option<MutexGuard<'_, Session>> {
        if self.full.load(Ordering::Relaxed) {
            return None;
        }
        let _building = self.building.try_lock().ok()?;
        let slot = self.slots.iter().find(|s| s.get().is_none())?;
        match runtime::create_session(&self.onnx, self.options) {
            Ok(session) => {
                let built = slot.get_or_init(|| Mutex::new(session));
                tracing::debug!(model = %self.onnx.display(), sessions = self.created(), "session added under load");
                Some(built.lock().unwrap_or_else(PoisonError::into_inner))
            }
            Err(e) => {
                self.full.store(true, Ordering::Relaxed);
                tracing::warn!(model = %self.onnx.display(), error = %e, "could not add a session; the model goes on with the ones it has");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cnn() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/fashion-mnist-cnn/model.onnx")
    }

    fn options() -> SessionOptions {
        SessionOptions {
            intra_threads: 1,
            spinning: false,
        }
    }

    #[test]
    fn sessions_are_built_only_when_every_built_one_is_busy() {
        let pool = SessionPool::new(cnn(), options(), 3);
        assert_eq!(pool.created(), 0, "nothing before the first batch");
        {
            let _a = pool.acquire().unwrap();
            assert_eq!(pool.created(), 1);
        }
        // One after another, the first session serves every caller.
        drop(pool.acquire().unwrap());
        assert_eq!(pool.created(), 1);
        let a = pool.acquire().unwrap();
        let b = pool.acquire().unwrap();
        assert_eq!(pool.created(), 2, "a second caller while the first runs");
        let c = pool.acquire().unwrap();
        assert_eq!(pool.created(), 3);
        drop((a, b, c));
        drop(pool.acquire().unwrap());
        assert_eq!(pool.created(), 3, "never more than the pool's size");
    }

    #[test]
    fn a_graph_that_cannot_be_built_is_an_error_not_a_panic() {
        let pool = SessionPool::new(PathBuf::from("/nonexistent/model.onnx"), options(), 2);
        assert!(pool.acquire().is_err());
        assert_eq!(pool.created(), 0);
    }
}
