//! Locks that keep working after a thread panicked while holding them.
//!
//! Rust "poisons" a lock whose holder panicked, and `lock()` then returns an error. Here every
//! caller takes the data anyway: one connection's bug must never take the whole server down.
//! That is safe because no update here can be left half-done in a way that matters: a
//! half-finished change to a client's state ends that client at worst, and the event log only
//! changes through short blocks with no code that could panic in the middle.

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
