package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"testing"
	"time"
)

// SharedMySQLAddrEnv names the environment variable holding the address of
// the shared MariaDB; DefaultSharedMySQLAddr is used when it is unset.
const (
	SharedMySQLAddrEnv     = "FLASHSALE_TEST_MYSQL_ADDR"
	DefaultSharedMySQLAddr = "127.0.0.1:3306"
)

// SharedMySQL creates a database of the test's own, fstest_<16 hex digits>,
// on the shared MariaDB and returns a DSN for it (root, no password, the same
// parameters as MariaDB.DSN). The database is dropped when the test ends.
//
// It is for tests that need a real MariaDB but never stop it: starting a
// private one costs about half a second, creating a database milliseconds.
// When the server does not answer the test is skipped, except under CI=true,
// where it fails.
func SharedMySQL(t testing.TB) string {
	t.Helper()
	addr := os.Getenv(SharedMySQLAddrEnv)
	if addr == "" {
		addr = DefaultSharedMySQLAddr
	}
	admin, err := sql.Open("mysql", dsn(addr, ""))
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	admin.SetMaxOpenConns(1)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		_ = admin.Close()
		unavailable(t, "no MariaDB at %s (set %s): %v", addr, SharedMySQLAddrEnv, err)
	}

	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		_ = admin.Close()
		t.Fatalf("testenv: database name: %v", err)
	}
	name := "fstest_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		_ = admin.Close()
		t.Fatalf("testenv: create database %s on %s: %v", name, addr, err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		// The test's own context is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name); err != nil {
			t.Errorf("testenv: drop database %s on %s: %v", name, addr, err)
		}
	})
	return dsn(addr, name)
}
