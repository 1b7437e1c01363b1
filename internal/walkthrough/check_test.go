package walkthrough

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	md := "# title\n```sh\necho not a walkthrough\n```\n" +
		"```sh walkthrough\n" +
		"# prose before a command\n" +
		"X=1\n" +
		"\n" +
		"curl -s a \\\n  -d '{}'\n" +
		"# {\"a\":1,\n" +
		"#  \"b\":\"<time>\"} 200\n" +
		"echo two\n" +
		"# two\n" +
		"```\n"
	steps, err := Parse(strings.NewReader(md))
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 3 {
		t.Fatalf("%d steps, want 3: %+v", len(steps), steps)
	}
	if steps[0].Command != "X=1" || len(steps[0].Answer) != 0 || steps[0].Line != 7 {
		t.Errorf("step 0 = %+v", steps[0])
	}
	if steps[1].Command != "curl -s a \\\n  -d '{}'" || len(steps[1].Answer) != 2 {
		t.Errorf("step 1 = %+v", steps[1])
	}
	if steps[2].Command != "echo two" || len(steps[2].Answer) != 1 || steps[2].Answer[0] != "two" {
		t.Errorf("step 2 = %+v", steps[2])
	}
	if _, err := Parse(strings.NewReader("```sh walkthrough\necho\n")); err == nil {
		t.Error("an unclosed block parsed")
	}
}

// TestCheck: what the README shows and what the service printed, agreeing
// and not; each disagreement must fail the walkthrough.
func TestCheck(t *testing.T) {
	item := []string{`{"sku":"a","n":1,"at":"<time>","id":"a.<22 random characters>",`, ` "m":<number>,"x":null} 201`}
	for _, tc := range []struct {
		name   string
		answer []string
		output string
		ok     bool
	}{
		{"same", item, `{"sku":"a","n":1,"at":"2026-12-04T22:10:04.142Z","id":"a.KsnAlnYEfhmjBiEOvSQzpA","m":7,"x":null} 201` + "\n", true},
		{"other status", item, `{"sku":"a","n":1,"at":"2026-12-04T22:10:04.142Z","id":"a.KsnAlnYEfhmjBiEOvSQzpA","m":7,"x":null} 200`, false},
		{"other value", item, `{"sku":"a","n":2,"at":"2026-12-04T22:10:04.142Z","id":"a.KsnAlnYEfhmjBiEOvSQzpA","m":7,"x":null} 201`, false},
		{"time in nanoseconds", item, `{"sku":"a","n":1,"at":"2026-12-04T22:10:04.142973467Z","id":"a.KsnAlnYEfhmjBiEOvSQzpA","m":7,"x":null} 201`, false},
		{"short id", item, `{"sku":"a","n":1,"at":"2026-12-04T22:10:04.142Z","id":"a.Ksn","m":7,"x":null} 201`, false},
		{"not a number", item, `{"sku":"a","n":1,"at":"2026-12-04T22:10:04.142Z","id":"a.KsnAlnYEfhmjBiEOvSQzpA","m":"7","x":null} 201`, false},
		{"extra field", item, `{"sku":"a","n":1,"at":"2026-12-04T22:10:04.142Z","id":"a.KsnAlnYEfhmjBiEOvSQzpA","m":7,"x":null,"y":1} 201`, false},
		{"missing field", item, `{"sku":"a","n":1,"at":"2026-12-04T22:10:04.142Z","id":"a.KsnAlnYEfhmjBiEOvSQzpA","m":7} 201`, false},
		{"no status", item, `{"sku":"a"}`, false},
		{"text", []string{"a.<22 random characters>"}, "a.KsnAlnYEfhmjBiEOvSQzpA\n", true},
		{"text differs", []string{"x 2", "y 1"}, "x 2\ny 2\n", false},
		{"fewer lines", []string{"x 2", "y 1"}, "x 2\n", false},
		{"nothing shown, nothing printed", nil, "", true},
		{"nothing shown, something printed", nil, "surprise\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.answer, tc.output)
			if (err == nil) != tc.ok {
				t.Errorf("Check = %v, want ok %v", err, tc.ok)
			}
		})
	}
}
