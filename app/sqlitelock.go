package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
)

// errLocked is what lockFile answers when another process holds the lock.
var errLocked = errors.New("in use by another flashsale process")

// errLockUnsupported is what lockFile answers where the platform has no
// flock.
var errLockUnsupported = errors.New("file locks are not supported on this platform")

// lockSQLite takes an exclusive lock on path + ".lock" (path with symlinks
// resolved, so two spellings of one file meet on one lock), for as long as
// the process lives or until the returned unlock. A second process on the
// same SQLite record is refused, naming the file.
//
// The lock is a file of its own rather than the database: SQLite locks the
// database with fcntl, and closing any descriptor of a file drops every
// fcntl lock the process holds on it, so a descriptor of ours on the
// database could undo SQLite's. The lock file stays behind on exit; it is
// the lock, not the file's existence, that refuses: removing it on close
// would let a third process lock a new file while a second holds the old.
func lockSQLite(path string, log *slog.Logger) (unlock func(), err error) {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	lockPath := path + ".lock"
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", lockPath, err)
	}
	switch err := lockFile(f); {
	case err == nil:
		return func() { _ = f.Close() }, nil // closing releases the lock
	case errors.Is(err, errLockUnsupported):
		_ = f.Close()
		log.Warn("the SQLite record is not locked on this platform: make sure no other process uses it", "path", path)
		return func() {}, nil
	case errors.Is(err, errLocked):
		_ = f.Close()
		return nil, fmt.Errorf("%s: %w (lock file %s): an SQLite record serves one process; "+
			"share a record between processes through FLASHSALE_MYSQL_DSN", path, err, lockPath)
	default:
		_ = f.Close()
		return nil, fmt.Errorf("lock %s: %w", lockPath, err)
	}
}
