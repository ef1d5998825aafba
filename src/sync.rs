//! Locks that keep working after a thread panicked while holding them.
//!
//! Rust "poisons" a lock whose holder panicked, and `lock()` then returns an error. Nothing here
//! leaves shared data half-changed across a panic (each update is one assignment or one push), so
//! the data is still good and every caller takes it anyway: one connection's bug never takes the
//! whole server down.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// `mutex.lock()`, poisoned or not.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// `rwlock.read()`, poisoned or not.
pub fn read<T>(rwlock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    rwlock.read().unwrap_or_else(|e| e.into_inner())
}

/// `rwlock.write()`, poisoned or not.
pub fn write<T>(rwlock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    rwlock.write().unwrap_or_else(|e| e.into_inner())
}
