// Package walkthrough reads the README's walkthrough, the fenced blocks
// opened with "```sh walkthrough", as steps a shell can run and answers a
// test can check, so the README cannot show what the service does not do.
//
// A step is a command (one or more lines, continuations included) and the
// comment lines right below it, which show its answer. A comment after a
// blank line, or before any command, is prose. An answer that starts with
// "{" is a JSON body followed by the HTTP status (what `curl -s -w ' %{http_code}\n'`
// prints); any other answer is lines of text. In both, a placeholder such as
// <time> or <22 random characters> stands for what differs between runs.
package walkthrough

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Step is one command of the walkthrough and the answer shown below it.
type Step struct {
	Line    int    // of the command's first line in the file
	Command string // as written, continuation lines included
	Answer  []string
}

// Parse returns the steps of every walkthrough block of a Markdown file, in
// order.
func Parse(r io.Reader) ([]Step, error) {
	var (
		steps   []Step
		in      bool
		cur     *Step
		closing bool // the current step's command is complete
		n       int
	)
	flush := func() {
		if cur != nil {
			steps = append(steps, *cur)
			cur = nil
		}
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case !in:
			in = strings.TrimSpace(line) == "```sh walkthrough"
			continue
		case strings.TrimSpace(line) == "```":
			flush()
			in = false
			continue
		}
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "":
			flush()
		case strings.HasPrefix(trimmed, "#"):
			if cur == nil {
				continue // prose
			}
			closing = true
			text := strings.TrimPrefix(trimmed, "#")
			text = strings.TrimPrefix(text, " ")
			cur.Answer = append(cur.Answer, text)
		default:
			if cur != nil && closing {
				flush()
			}
			if cur == nil {
				cur, closing = &Step{Line: n}, false
				cur.Command = line
			} else {
				cur.Command += "\n" + line
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if in {
		return nil, fmt.Errorf("line %d: a walkthrough block is not closed", n)
	}
	return steps, nil
}

// Check compares what a step printed with the answer it shows, and says
// how they differ.
func Check(answer []string, output string) error {
	output = strings.TrimRight(output, "\n")
	if len(answer) == 0 {
		if output != "" {
			return fmt.Errorf("printed %q, the README shows nothing", output)
		}
		return nil
	}
	if strings.HasPrefix(answer[0], "{") {
		return checkJSON(answer, output)
	}
	got := strings.Split(output, "\n")
	if len(got) != len(answer) {
		return fmt.Errorf("printed %d lines, the README shows %d:\n%s", len(got), len(answer), output)
	}
	for i, want := range answer {
		if !pattern(want).MatchString(got[i]) {
			return fmt.Errorf("line %d: printed %q, the README shows %q", i+1, got[i], want)
		}
	}
	return nil
}

// checkJSON compares a "<json> <status>" answer: the status exactly, the
// body field by field, with the same fields.
func checkJSON(answer []string, output string) error {
	var shown strings.Builder
	for _, l := range answer {
		shown.WriteString(strings.TrimSpace(l))
	}
	wantBody, wantStatus, err := splitStatus(shown.String())
	if err != nil {
		return fmt.Errorf("the README's answer: %w", err)
	}
	gotBody, gotStatus, err := splitStatus(output)
	if err != nil {
		return fmt.Errorf("printed %q: %w", output, err)
	}
	if gotStatus != wantStatus {
		return fmt.Errorf("status %d, the README shows %d; body %s", gotStatus, wantStatus, gotBody)
	}
	var want, got any
	// A placeholder outside quotes (a number that varies) is read as a string.
	quoted := unquotedPlaceholder.ReplaceAllString(wantBody, `$1"$2"`)
	if err := json.Unmarshal([]byte(quoted), &want); err != nil {
		return fmt.Errorf("the README's answer is not JSON: %w: %s", err, quoted)
	}
	if err := json.Unmarshal([]byte(gotBody), &got); err != nil {
		return fmt.Errorf("printed a body that is not JSON: %w: %s", err, gotBody)
	}
	if err := match("", want, got); err != nil {
		return fmt.Errorf("%w\nprinted: %s", err, gotBody)
	}
	return nil
}

var unquotedPlaceholder = regexp.MustCompile(`([:\[,])(<[^<>"]+>)`)

func splitStatus(s string) (body string, status int, err error) {
	i := strings.LastIndexByte(s, ' ')
	if i < 0 {
		return "", 0, fmt.Errorf("no status after the body")
	}
	status, err = strconv.Atoi(s[i+1:])
	if err != nil || status < 100 || status > 599 {
		return "", 0, fmt.Errorf("no status after the body")
	}
	return strings.TrimSpace(s[:i]), status, nil
}

// match compares a shown JSON value with the one printed, at path.
func match(path string, want, got any) error {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: printed %v, the README shows an object", orRoot(path), got)
		}
		if wk, gk := keys(w), keys(g); !reflect.DeepEqual(wk, gk) {
			return fmt.Errorf("%s: printed the fields %v, the README shows %v", orRoot(path), gk, wk)
		}
		for k, v := range w {
			if err := match(path+"."+k, v, g[k]); err != nil {
				return err
			}
		}
		return nil
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Errorf("%s: printed %v, the README shows %v", orRoot(path), got, want)
		}
		for i := range w {
			if err := match(fmt.Sprintf("%s[%d]", path, i), w[i], g[i]); err != nil {
				return err
			}
		}
		return nil
	case string:
		if w == "<number>" {
			if _, ok := got.(float64); !ok {
				return fmt.Errorf("%s: printed %v, the README shows a number", orRoot(path), got)
			}
			return nil
		}
		g, ok := got.(string)
		if !ok || !pattern(w).MatchString(g) {
			return fmt.Errorf("%s: printed %v, the README shows %q", orRoot(path), got, w)
		}
		return nil
	default:
		if !reflect.DeepEqual(want, got) {
			return fmt.Errorf("%s: printed %v, the README shows %v", orRoot(path), got, want)
		}
		return nil
	}
}

func orRoot(path string) string {
	if path == "" {
		return "body"
	}
	return strings.TrimPrefix(path, ".")
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var (
	placeholder = regexp.MustCompile(`<[^<>]+>`)
	nCharacters = regexp.MustCompile(`^<(\d+) random characters>$`)
)

// pattern is shown text as a regular expression: literal text, and each
// placeholder what it stands for.
func pattern(shown string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	last := 0
	for _, loc := range placeholder.FindAllStringIndex(shown, -1) {
		b.WriteString(regexp.QuoteMeta(shown[last:loc[0]]))
		b.WriteString(placeholderPattern(shown[loc[0]:loc[1]]))
		last = loc[1]
	}
	b.WriteString(regexp.QuoteMeta(shown[last:]))
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

func placeholderPattern(p string) string {
	switch p {
	case "<time>":
		// RFC 3339 in UTC with milliseconds: what the API promises.
		return `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`
	case "<number>":
		return `-?\d+`
	case "<request id>":
		return `[A-Za-z0-9._-]{1,64}`
	}
	if m := nCharacters.FindStringSubmatch(p); m != nil {
		return `[A-Za-z0-9_-]{` + m[1] + `}`
	}
	return `.+`
}
