package httpapi

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
)

// TestErrorsDocumented: the errors table of docs/api.md lists every problem
// code the service answers, each with its status, and no code it does not.
func TestErrorsDocumented(t *testing.T) {
	want := map[string]int{} // code -> status
	for _, d := range domainKinds {
		want[d.code] = d.status
	}
	for _, e := range []*httpError{errUnauthorized, errServiceUnauthorized, errBuyerUnauthorized, errForbiddenUser, errTooLarge, errMediaType, errContentEncoding} {
		want[e.code] = e.status
	}
	want[kindInternal.code] = kindInternal.status
	// classify's names for Fiber's own routing errors.
	for _, fe := range []*fiber.Error{fiber.ErrNotFound, fiber.ErrMethodNotAllowed} {
		k, _ := classify(fe)
		want[k.code] = k.status
	}

	got := errorsTable(t, "../docs/api.md")
	for code, status := range want {
		switch s, ok := got[code]; {
		case !ok:
			t.Errorf("docs/api.md errors table lacks %s (%d)", code, status)
		case s != status:
			t.Errorf("docs/api.md errors table: %s is %d, the service answers %d", code, s, status)
		}
	}
	for code := range got {
		if _, ok := want[code]; !ok {
			t.Errorf("docs/api.md errors table lists %s, which the service never answers", code)
		}
	}
}

// errorsTable reads the "| status | code | when |" table under the Errors
// heading of path: code -> status.
func errorsTable(t *testing.T, path string) map[string]int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]int{}
	inSection, inTable := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			inSection = line == "## Errors"
		case inSection && strings.HasPrefix(line, "| status | code |"):
			inTable = true
		case inTable && strings.HasPrefix(line, "|---"):
		case inTable && strings.HasPrefix(line, "| "):
			cells := strings.Split(line, "|")
			status, err := strconv.Atoi(strings.TrimSpace(cells[1]))
			if err != nil {
				t.Fatalf("%s: errors table row %q: %v", path, line, err)
			}
			for _, c := range strings.Split(cells[2], ",") {
				out[strings.Trim(strings.TrimSpace(c), "`")] = status
			}
		case inTable:
			inTable = false
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no errors table under ## Errors", path)
	}
	return out
}
