// Package proptest holds what the randomized property tests share.
package proptest

import (
	"flag"
	"os"
	"strconv"
	"testing"
)

// Checks makes the rapid.Check calls of this test run n cases, unless the
// number was chosen with -rapid.checks or RAPID_CHECKS: some properties need
// fewer (each case is slow) or more (rare paths) than rapid's default. The
// test must not run in parallel with other rapid tests: the setting is
// rapid's flag, global to the test binary.
func Checks(t testing.TB, n int) {
	t.Helper()
	if _, ok := os.LookupEnv("RAPID_CHECKS"); ok {
		return
	}
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "rapid.checks" })
	f := flag.Lookup("rapid.checks")
	if set || f == nil {
		return
	}
	old := f.Value.String()
	if err := f.Value.Set(strconv.Itoa(n)); err != nil {
		t.Fatalf("set rapid.checks: %v", err)
	}
	t.Cleanup(func() { _ = f.Value.Set(old) })
}
