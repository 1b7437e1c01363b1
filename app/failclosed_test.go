package main

import (
	"bytes"
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// The tests of issue 11, part 3: a wrong configuration stops the service
// before it serves, instead of running on a default that sells twice.

// TestWrongConfigRefusedByEveryCommand: serve, sync and config refuse the
// same configurations with the same errors, before opening anything. A
// command that accepts one runs until its context ends and returns nil,
// which fails the test instead of hanging it.
func TestWrongConfigRefusedByEveryCommand(t *testing.T) {
	tests := []struct {
		name    string
		vars    map[string]string
		wantErr []string
	}{
		{
			name:    "redis unset",
			vars:    map[string]string{},
			wantErr: []string{"FLASHSALE_REDIS_ADDR is unset", "or set FLASHSALE_REDIS_ADDR=embedded for a local in-memory Redis"},
		},
		{
			name:    "misspelled redis variable",
			vars:    map[string]string{"FLASHSALE_REDIS_URL": "127.0.0.1:6379"},
			wantErr: []string{"unknown variable FLASHSALE_REDIS_URL (did you mean FLASHSALE_REDIS_ADDR?)", "FLASHSALE_REDIS_ADDR is unset"},
		},
		{
			name:    "embedded redis over a shared mysql record",
			vars:    map[string]string{"FLASHSALE_REDIS_ADDR": "embedded", "FLASHSALE_MYSQL_DSN": "root@tcp(127.0.0.1:3306)/flashsale"},
			wantErr: []string{"cannot be used with FLASHSALE_MYSQL_DSN"},
		},
	}
	commands := []struct {
		name string
		run  func(ctx context.Context, vars map[string]string) error
	}{
		{"serve", func(ctx context.Context, vars map[string]string) error { return run(ctx, env(vars), io.Discard) }},
		{"sync", func(ctx context.Context, vars map[string]string) error { return runSync(ctx, env(vars), io.Discard) }},
		{"config", func(_ context.Context, vars map[string]string) error { return printConfig(env(vars), io.Discard) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Nothing may be created: the SQLite file lives here if it is.
			dir := t.TempDir()
			tt.vars["FLASHSALE_SQLITE_PATH"] = filepath.Join(dir, "flashsale.db")
			tt.vars["FLASHSALE_HTTP_ADDR"] = freeAddr(t)
			// Keys of the test's own, should a command wrongly reach a Redis.
			tt.vars["FLASHSALE_KEY_PREFIX"] = "fstest-wrong-config"
			var serveErr string
			for _, cmd := range commands {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				err := cmd.run(ctx, tt.vars)
				cancel()
				if err == nil {
					t.Fatalf("%s accepted %v", cmd.name, tt.vars)
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("%s: error %q does not say %q", cmd.name, err, want)
					}
				}
				if cmd.name == "serve" {
					serveErr = err.Error()
				} else if err.Error() != serveErr {
					t.Errorf("%s: error %q, serve's %q", cmd.name, err, serveErr)
				}
			}
			if entries, _ := os.ReadDir(dir); len(entries) > 0 {
				t.Errorf("a refused start left %v behind", entries)
			}
		})
	}
}

// TestSyncRefusesEmbeddedRedis: a syncer apart from serve needs an outbox
// it shares with serve, which an in-memory Redis of its own is not.
func TestSyncRefusesEmbeddedRedis(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second) // an accepted sync returns nil then
	defer cancel()
	err := runSync(ctx, env(map[string]string{
		"FLASHSALE_REDIS_ADDR": "embedded", "FLASHSALE_SQLITE_PATH": filepath.Join(t.TempDir(), "x.db"),
	}), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "an embedded Redis has no outbox to share") {
		t.Fatalf("runSync = %v, want it refused", err)
	}
}

// TestOpenDBLocksSQLite opens an SQLite record twice in this process through
// openDB, the path serve and sync take: the second open is refused naming
// the file while the first holds it, and accepted once the first closes.
// flock locks belong to the open file, so two opens in one process conflict
// as two processes do.
func TestOpenDBLocksSQLite(t *testing.T) {
	tests := []struct {
		name       string
		second     func(first string) string // the second open's path
		wantRefuse bool
	}{
		{name: "same path", second: func(first string) string { return first }, wantRefuse: true},
		{
			name: "same file through a symlink",
			second: func(first string) string {
				link := filepath.Join(t.TempDir(), "link.db")
				if err := os.Symlink(first, link); err != nil {
					t.Skipf("symlink: %v", err)
				}
				return link
			},
			wantRefuse: true,
		},
		{name: "another file", second: func(first string) string { return first + "-other" }, wantRefuse: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first := filepath.Join(t.TempDir(), "flashsale.db")
			closeFirst := openTestDB(t, first)
			second := tt.second(first)

			_, closeSecond, err := openDB(context.Background(), sqliteConfig(second), discardLog())
			switch {
			case !tt.wantRefuse && err != nil:
				t.Fatalf("second open of %s refused: %v", second, err)
			case !tt.wantRefuse:
				closeSecond()
				closeFirst()
				return
			case err == nil:
				closeSecond()
				t.Fatalf("second open of %s accepted while %s is open", second, first)
			}
			if !strings.Contains(err.Error(), first+": in use by another flashsale process") {
				t.Errorf("refusal %q does not name %s as in use", err, first)
			}

			closeFirst()
			openTestDB(t, second)()
		})
	}
}

// TestRunRefusesASecondProcessOnTheSQLiteFile starts serve on an SQLite
// file, then serve and sync on the same file: both must refuse, naming it.
// One that starts instead runs until its context ends and returns nil.
func TestRunRefusesASecondProcessOnTheSQLiteFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.db")
	startRun(t, map[string]string{"FLASHSALE_SQLITE_PATH": path})

	tests := []struct {
		name string
		run  func(ctx context.Context, t *testing.T) error
	}{
		{name: "serve", run: func(ctx context.Context, t *testing.T) error {
			return run(ctx, env(map[string]string{
				"FLASHSALE_REDIS_ADDR": "embedded", "FLASHSALE_SQLITE_PATH": path, "FLASHSALE_HTTP_ADDR": freeAddr(t),
			}), io.Discard)
		}},
		{name: "sync", run: func(ctx context.Context, t *testing.T) error {
			// sync refuses the embedded Redis; an in-process one at a
			// host:port of its own stands in for a real one.
			return runSync(ctx, env(map[string]string{
				"FLASHSALE_REDIS_ADDR": miniredis.RunT(t).Addr(), "FLASHSALE_SQLITE_PATH": path,
			}), io.Discard)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			err := tt.run(ctx, t)
			if err == nil || !strings.Contains(err.Error(), path+": in use by another flashsale process") {
				t.Fatalf("second %s on %s = %v, want it refused naming the file", tt.name, path, err)
			}
		})
	}
}

// TestPrintConfig checks `flashsale config`: every variable the Config
// struct documents is printed once, with its effective value and whether it
// is the default, and no secret is shown.
func TestPrintConfig(t *testing.T) {
	const (
		token         = "admin-token-not-to-print-0123"
		serviceToken  = "service-token-not-to-print-0123"
		redisPassword = "redis-password-not-to-print"
		dsnPassword   = "dsn-password-not-to-print"
	)
	vars := map[string]string{
		"FLASHSALE_REDIS_ADDR":      "redis:6379",
		"FLASHSALE_REDIS_PASSWORD":  redisPassword,
		"FLASHSALE_ADMIN_TOKEN":     token + ",second-admin-token-not-to-print",
		"FLASHSALE_SERVICE_TOKENS":  serviceToken,
		"FLASHSALE_MYSQL_DSN":       "app:" + dsnPassword + "@tcp(db:3306)/flashsale?parseTime=true",
		"FLASHSALE_SYNC_WAIT":       "20ms",
		"FLASHSALE_TEST_REDIS_ADDR": "127.0.0.1:6379", // reserved: neither refused nor printed
	}
	var out bytes.Buffer
	if err := printConfig(env(vars), &out); err != nil {
		t.Fatalf("printConfig: %v\n%s", err, out.String())
	}
	for _, secret := range []string{token, "second-admin-token", serviceToken, redisPassword, dsnPassword} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("config shows a secret %q:\n%s", secret, out.String())
		}
	}

	printed := map[string]string{} // name -> the rest of its line
	for _, line := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
		name, rest, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("line %q is not NAME=value", line)
		}
		if _, dup := printed[name]; dup {
			t.Errorf("%s printed twice", name)
		}
		printed[name] = strings.Join(strings.Fields(rest), " ")
	}
	documented := documentedVariables(t)
	for _, name := range documented {
		if _, ok := printed[name]; !ok {
			t.Errorf("config does not print %s", name)
		}
	}
	for name := range printed {
		if !slices.Contains(documented, name) {
			t.Errorf("config prints %s, which no Config field documents", name)
		}
	}

	for name, want := range map[string]string{
		"FLASHSALE_REDIS_ADDR":          "redis:6379 # set",
		"FLASHSALE_REDIS_PASSWORD":      "***** # set",
		"FLASHSALE_ADMIN_TOKEN":         "***** # set",
		"FLASHSALE_SERVICE_TOKENS":      "***** # set",
		"FLASHSALE_MYSQL_DSN":           "app:*****@tcp(db:3306)/flashsale?parseTime=true # set",
		"FLASHSALE_SYNC_WAIT":           "20ms # set",
		"FLASHSALE_HTTP_ADDR":           ":3004 # default",
		"FLASHSALE_SYNC_TIMEOUT":        "3s # default",
		"FLASHSALE_SYNC_CLAIM_IDLE":     "6.04s # default", // follows the wait set above
		"FLASHSALE_LOG_LEVEL":           "info # default",
		"FLASHSALE_METRICS":             "true # default",
		"FLASHSALE_REDIS_CLUSTER_ADDRS": "# default",
	} {
		if got := printed[name]; got != want {
			t.Errorf("%s printed as %q, want %q", name, got, want)
		}
	}
}

func TestMaskDSN(t *testing.T) {
	tests := []struct{ name, dsn, want string }{
		{"user and password", "root:pw@tcp(127.0.0.1:3306)/flashsale", "root:*****@tcp(127.0.0.1:3306)/flashsale"},
		{"password with @ and :", "u:p@ss:w@rd@tcp(db)/x?a=b", "u:*****@tcp(db)/x?a=b"},
		{"no password", "root@tcp(127.0.0.1:3306)/flashsale", "root@tcp(127.0.0.1:3306)/flashsale"},
		{"empty password", "root:@tcp(db)/x", "root:*****@tcp(db)/x"},
		{"no user", "/flashsale", "/flashsale"},
		{"unreadable", "not a dsn", "*****"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := maskDSN(tt.dsn); got != tt.want {
				t.Errorf("maskDSN(%q) = %q, want %q", tt.dsn, got, tt.want)
			}
		})
	}
}

// TestRepositoryVariablesKnownOrReserved reads every FLASHSALE_* name the
// repository's code, scripts and CI use: each must be one the service reads
// or under a reserved prefix, or starting the binary in that environment
// (the Makefile exports into every process, tests pass theirs on) fails.
// The app's own tests are skipped: they spell names wrong on purpose.
func TestRepositoryVariablesKnownOrReserved(t *testing.T) {
	cfg, err := LoadConfig(env(map[string]string{"FLASHSALE_REDIS_ADDR": "embedded"}))
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, s := range cfg.Settings {
		known[s.Name] = true
	}
	name := regexp.MustCompile(`FLASHSALE_[A-Z0-9_]*`)
	found := map[string]string{} // name -> a file using it
	err = filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == ".git" || n == "bin" || n == "node_modules" {
				return filepath.SkipDir
			}
			return nil
		}
		switch ext := filepath.Ext(path); {
		case filepath.Dir(path) == filepath.Join("..", "app") && strings.HasSuffix(path, "_test.go"):
			return nil
		case ext == ".go" || ext == ".sh" || ext == ".js" || ext == ".yml" || ext == ".yaml",
			d.Name() == "Makefile", d.Name() == "Dockerfile", strings.HasPrefix(path, filepath.Join("..", ".ci")):
		default:
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range name.FindAllString(string(src), -1) {
			if !strings.HasSuffix(n, "_") { // FLASHSALE_ and FLASHSALE_TEST_* are prefixes
				found[n] = path
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found["FLASHSALE_TEST_REDIS_ADDR"] == "" || len(found) < 10 {
		t.Fatalf("found only %v: is the walk reading the repository?", found)
	}
	for n, path := range found {
		if !known[n] && !reservedVariable(n) {
			t.Errorf("%s (in %s) is neither read by the service nor reserved", n, path)
		}
	}
}

// documentedVariables is every FLASHSALE_* name the Config struct's field
// comments open with, read from config.go.
func documentedVariables(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "config.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	ast.Inspect(f, func(n ast.Node) bool {
		spec, ok := n.(*ast.TypeSpec)
		if !ok || spec.Name.Name != "Config" {
			return true
		}
		for _, field := range spec.Type.(*ast.StructType).Fields.List {
			if field.Comment == nil {
				continue
			}
			if word := strings.Fields(field.Comment.Text()); len(word) > 0 && strings.HasPrefix(word[0], "FLASHSALE_") {
				names = append(names, strings.TrimRight(word[0], ":;,"))
			}
		}
		return false
	})
	if len(names) < 30 {
		t.Fatalf("read only %d variables from the Config struct: %v", len(names), names)
	}
	return names
}

// openTestDB opens the SQLite record at path as serve does and closes it
// when the test ends, if the test has not; closing twice is harmless.
func openTestDB(t *testing.T, path string) func() {
	t.Helper()
	_, closeDB, err := openDB(context.Background(), sqliteConfig(path), discardLog())
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	var closed bool
	closeOnce := func() {
		if !closed {
			closed = true
			closeDB()
		}
	}
	t.Cleanup(closeOnce)
	return closeOnce
}

func sqliteConfig(path string) Config { return Config{SQLitePath: path} }

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
