package testenv

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // the "mysql" database/sql driver
)

// dsnParams are the DSN parameters every database this package hands out
// uses: times come back as time.Time in UTC, and a dead server makes a call
// fail within seconds instead of hanging the test.
const dsnParams = "parseTime=true&loc=UTC&timeout=2s&readTimeout=5s&writeTimeout=5s"

func dsn(addr, db string) string {
	return fmt.Sprintf("root@tcp(%s)/%s?%s", addr, db, dsnParams)
}

// mariadbServerArgs are shared by mariadb-install-db and mariadbd, so that
// the data directory is created with the settings it is then run with. They
// make startup fast (a small buffer pool and redo log, no binary log, no
// buffer-pool dump, no DNS) and match the shared server where the app could
// notice (character set).
var mariadbServerArgs = []string{
	"--skip-log-bin",
	"--skip-name-resolve",
	"--innodb-buffer-pool-size=32M",
	"--innodb-log-file-size=8M",
	"--innodb-buffer-pool-load-at-startup=0",
	"--innodb-buffer-pool-dump-at-shutdown=0",
	"--innodb-temp-data-file-path=ibtmp1:1M:autoextend",
	"--character-set-server=utf8mb4",
	"--collation-server=utf8mb4_general_ci",
}

// rootArgs lets the server run as root, which mariadbd otherwise refuses;
// only root may pass --user.
func rootArgs() []string {
	if os.Geteuid() == 0 {
		return []string{"--user=root"}
	}
	return nil
}

// MariaDB is a private mariadbd that a test may kill and restart.
type MariaDB struct {
	addr string
	p    *proc
}

// StartMariaDB runs a mariadbd of the test's own, with a fresh data
// directory holding an empty database "flashsale", and waits until it
// answers queries. It is killed when the test ends.
//
// Every commit is flushed to disk (innodb_flush_log_at_trx_commit=1), so a
// Kill loses nothing that was committed.
func StartMariaDB(t testing.TB) *MariaDB {
	t.Helper()
	sbin := []string{"/usr/sbin", "/usr/local/sbin", "/usr/libexec", "/usr/local/mysql/bin"}
	mariadbd := lookBinary(t, "mariadbd", sbin...)
	install := lookBinary(t, "mariadb-install-db", append([]string{"/usr/bin", "/usr/local/bin", "/usr/local/mysql/scripts"}, sbin...)...)

	tmpl := mariadbTemplate(t, install)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := tmpl.writeTo(data); err != nil {
		t.Fatalf("testenv: copy template data directory: %v", err)
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	port := FreePort(t)
	logPath := filepath.Join(dir, "err.log")
	args := append([]string{"--no-defaults"}, rootArgs()...)
	args = append(args,
		"--datadir="+data,
		"--tmpdir="+tmp,
		"--socket="+socketPath(t, dir),
		"--pid-file="+filepath.Join(dir, "mariadbd.pid"),
		"--port="+strconv.Itoa(port),
		"--bind-address=127.0.0.1",
		"--skip-networking=0",
		"--innodb-flush-log-at-trx-commit=1",
		"--log-error="+logPath,
	)
	args = append(args, mariadbServerArgs...)

	m := &MariaDB{
		addr: fmt.Sprintf("127.0.0.1:%d", port),
		p: &proc{
			name:    "mariadbd on port " + strconv.Itoa(port),
			path:    mariadbd,
			args:    args,
			dir:     dir,
			logPath: logPath,
		},
	}
	m.p.cleanupKill(t)
	m.p.startAndWait(t, m.ready)

	db, err := sql.Open("mysql", dsn(m.addr, ""))
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE flashsale"); err != nil {
		t.Fatalf("testenv: create database flashsale on %s: %v\n%s", m.addr, err, logTail(logPath))
	}
	return m
}

// socketPath is where mariadbd puts its unix socket, which it always
// creates and which must not be the shared server's. A socket path is
// limited to 107 bytes, which a TempDir under a long test name can exceed;
// then the socket goes in a short directory of its own.
func socketPath(t testing.TB, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "mariadbd.sock")
	if len(p) < 100 {
		return p
	}
	short, err := os.MkdirTemp("", "fsdb")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(short) })
	return filepath.Join(short, "s")
}

func (m *MariaDB) ready(ctx context.Context) error {
	db, err := sql.Open("mysql", dsn(m.addr, ""))
	if err != nil {
		return err
	}
	defer db.Close()
	var one int
	return db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// Addr returns host:port, which stays the same across restarts.
func (m *MariaDB) Addr() string { return m.addr }

// DSN returns a go-sql-driver DSN for the database "flashsale" as root. It
// stays valid across restarts.
func (m *MariaDB) DSN(t testing.TB) string {
	t.Helper()
	return dsn(m.addr, "flashsale")
}

// Kill sends SIGKILL and waits for the process to exit: a crash, after
// which Restart runs InnoDB crash recovery.
func (m *MariaDB) Kill(t testing.TB) {
	t.Helper()
	m.p.killT(t)
}

// Stop shuts mariadbd down with SIGTERM, killing it if it takes longer than
// 15s (which fails the test).
func (m *MariaDB) Stop(t testing.TB) {
	t.Helper()
	m.p.stopT(t)
}

// Restart starts mariadbd again on the same port and data directory and
// waits until it answers queries. A server still running is stopped first.
func (m *MariaDB) Restart(t testing.TB) {
	t.Helper()
	m.p.restartT(t, m.ready)
}

// dataTemplate is a freshly initialised data directory, held in memory.
// mariadb-install-db takes seconds while copying its output takes
// milliseconds, so it runs once per test binary; holding the copy in memory
// (about 25 MB) rather than on disk leaves nothing behind when the binary
// exits.
type dataTemplate struct {
	dirs  []string // relative, parents first
	files []templateFile
}

type templateFile struct {
	rel  string
	mode fs.FileMode
	data []byte
}

var mariadbTmpl struct {
	once sync.Once
	tmpl *dataTemplate
	err  error
}

func mariadbTemplate(t testing.TB, install string) *dataTemplate {
	t.Helper()
	mariadbTmpl.once.Do(func() {
		begin := time.Now()
		mariadbTmpl.tmpl, mariadbTmpl.err = buildDataTemplate(install)
		if mariadbTmpl.err == nil {
			t.Logf("testenv: mariadb-install-db took %v (once per test binary)", time.Since(begin).Round(time.Millisecond))
		}
	})
	if mariadbTmpl.err != nil {
		t.Fatalf("testenv: %v", mariadbTmpl.err)
	}
	return mariadbTmpl.tmpl
}

func buildDataTemplate(install string) (*dataTemplate, error) {
	work, err := os.MkdirTemp("", "flashsale-testenv-mariadb-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	data := filepath.Join(work, "data")

	args := append([]string{"--no-defaults"}, rootArgs()...)
	args = append(args,
		"--datadir="+data,
		"--auth-root-authentication-method=normal",
		"--skip-test-db",
		// Only while installing: skipping the doublewrite buffer halves
		// the time, and nothing here needs to survive a power cut.
		"--innodb-doublewrite=0",
	)
	args = append(args, mariadbServerArgs...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, install, args...)
	cmd.Dir = work
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %v\n%s", install, strings.Join(args, " "), err, tailString(string(out)))
	}

	tmpl := &dataTemplate{}
	err = filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(data, path)
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			tmpl.dirs = append(tmpl.dirs, rel)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			tmpl.files = append(tmpl.files, templateFile{rel: rel, mode: info.Mode().Perm(), data: b})
		default:
			return fmt.Errorf("unexpected file %s (%v) in the data directory", path, d.Type())
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the data directory mariadb-install-db made: %w", err)
	}
	return tmpl, nil
}

func (d *dataTemplate) writeTo(dst string) error {
	for _, rel := range d.dirs {
		if err := os.MkdirAll(filepath.Join(dst, rel), 0o700); err != nil {
			return err
		}
	}
	for _, f := range d.files {
		if err := os.WriteFile(filepath.Join(dst, f.rel), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// tailString keeps the end of a command's output, where its error is.
func tailString(s string) string {
	const max = 4 << 10
	if len(s) > max {
		s = "..." + s[len(s)-max:]
	}
	return s
}
