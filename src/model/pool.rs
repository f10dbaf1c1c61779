//! A model's ONNX Runtime sessions, created when the load needs them.
//!
//! Every session holds its own copy of the optimised graph and its arena, so
//! a session that never runs is memory spent for nothing: `serve` loads every
//! model under `models/`, and with two sessions each from the start, an idle
//! server held 375 MiB where one session each held 282 (issue #29). The first
//! session is made at load, because the graph check needs it and the first
//! request should not pay for it; the others are made the first time every
//! existing session is busy, which only happens for a model under load.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError, TryLockError};

use ort::session::Session;

use crate::runtime::{self, SessionOptions};

pub(crate) struct SessionPool {
    onnx: PathBuf,
    options: SessionOptions,
    first: Mutex<Session>,
    /// The sessions beyond the first, built under load.
    more: Box<[OnceLock<Mutex<Session>>]>,
    /// Held while a session is being built, so two busy callers don't build two.
    building: Mutex<()>,
    /// Set when building a session failed: the pool stays at what it has.
    full: AtomicBool,
    next: AtomicUsize,
}

impl SessionPool {
    /// A pool of at most `size` sessions, holding `first` already.
    pub(crate) fn new(
        onnx: PathBuf,
        options: SessionOptions,
        size: usize,
        first: Session,
    ) -> SessionPool {
        SessionPool {
            onnx,
            options,
            first: Mutex::new(first),
            more: (1..size.max(1)).map(|_| OnceLock::new()).collect(),
            building: Mutex::new(()),
            full: AtomicBool::new(false),
            next: AtomicUsize::new(0),
        }
    }

    /// Sessions built so far.
    pub(crate) fn created(&self) -> usize {
        1 + self.more.iter().filter(|s| s.get().is_some()).count()
    }

    /// The built sessions, first to last.
    fn built(&self) -> impl Iterator<Item = &Mutex<Session>> {
        std::iter::once(&self.first).chain(self.more.iter().map_while(OnceLock::get))
    }

    /// A free session; a new one when every built session is busy and the
    /// pool may grow; else wait for one, handed out in turn.
    pub(crate) fn acquire(&self) -> MutexGuard<'_, Session> {
        for session in self.built() {
            match session.try_lock() {
                Ok(guard) => return guard,
                // A poisoned lock only means another batch panicked mid-run;
                // the session itself is still usable.
                Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        if let Some(guard) = self.grow() {
            return guard;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.created();
        self.built()
            .nth(i)
            .unwrap_or(&self.first)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Build the next session if there is room and nobody else is building.
    fn grow(&self) -> Option<MutexGuard<'_, Session>> {
        if self.full.load(Ordering::Relaxed) {
            return None;
        }
        let _building = self.building.try_lock().ok()?;
        let slot = self.more.iter().find(|s| s.get().is_none())?;
        match runtime::create_session(&self.onnx, self.options) {
            Ok(session) => {
                let _ = slot.set(Mutex::new(session));
                tracing::debug!(model = %self.onnx.display(), sessions = self.created(), "session added under load");
                slot.get()
                    .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner))
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
        let first = runtime::create_session(&cnn(), options()).unwrap();
        let pool = SessionPool::new(cnn(), options(), 3, first);
        assert_eq!(pool.created(), 1, "only the first session at load");
        {
            let _a = pool.acquire();
            assert_eq!(pool.created(), 1);
        }
        // One after another, the first session serves every caller.
        drop(pool.acquire());
        assert_eq!(pool.created(), 1);
        let a = pool.acquire();
        let b = pool.acquire();
        assert_eq!(pool.created(), 2, "a second caller while the first runs");
        let c = pool.acquire();
        assert_eq!(pool.created(), 3);
        drop((a, b, c));
        drop(pool.acquire());
        assert_eq!(pool.created(), 3, "never more than the pool's size");
    }
}
