//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd)

package main

import "os"

// lockFile has no flock to take here; lockSQLite warns instead.
func lockFile(*os.File) error { return errLockUnsupported }
