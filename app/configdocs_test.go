package main

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestConfigDocs: docs/configuration.md lists exactly the variables
// LoadConfig reads, each with the default `flashsale config` prints, and the
// README's short table is a part of it with the same defaults. A default
// shown as text only (*(unset)*, *(generated)*) stands for an empty value.
func TestConfigDocs(t *testing.T) {
	cfg, _ := LoadConfig(Environ{}) // nothing set: every value is its default
	defaults := make(map[string]string, len(cfg.Settings))
	for _, s := range cfg.Settings {
		if !s.Default {
			t.Fatalf("%s is not its default with nothing set", s.Name)
		}
		defaults[s.Name] = s.Value
	}

	full := configTable(t, "../docs/configuration.md")
	for name := range defaults {
		if _, ok := full[name]; !ok {
			t.Errorf("docs/configuration.md lacks %s, which LoadConfig reads", name)
		}
	}
	for _, path := range []string{"../docs/configuration.md", "../README.md"} {
		for name, shown := range configTable(t, path) {
			def, ok := defaults[name]
			switch {
			case !ok:
				t.Errorf("%s lists %s, which LoadConfig does not read", path, name)
			case shown != def:
				t.Errorf("%s: %s defaults to %q, LoadConfig to %q", path, name, shown, def)
			}
		}
	}
}

var backticked = regexp.MustCompile("`([^`]*)`")

// configTable reads the rows "| `FLASHSALE_...` | default | meaning |" of
// path: name -> the default's first code span, or "" when it has none.
func configTable(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "| `FLASHSALE_") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 4 {
			t.Fatalf("%s: row %q has no default column", path, line)
		}
		name := strings.Trim(strings.TrimSpace(cells[1]), "`")
		if _, dup := out[name]; dup {
			t.Errorf("%s lists %s twice", path, name)
		}
		def := ""
		if m := backticked.FindStringSubmatch(cells[2]); m != nil {
			def = m[1]
		}
		out[name] = def
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no configuration table", path)
	}
	return out
}
