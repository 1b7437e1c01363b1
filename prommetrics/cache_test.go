package prommetrics

import (
	"fmt"
	"sync"
	"testing"
)

// TestReadMostlyCreatesOnce: goroutines racing for the same new keys get
// one value per key, created once, whether they hit the published map or
// the locked one.
func TestReadMostlyCreatesOnce(t *testing.T) {
	var c readMostly[string, *int]
	var mu sync.Mutex
	created := map[string]int{}
	create := func(k string) (string, *int) {
		mu.Lock()
		defer mu.Unlock()
		created[k]++
		v := new(int)
		return k, v
	}
	const keys, workers = 300, 8
	got := make([]map[string]*int, workers)
	var wg sync.WaitGroup
	for w := range workers {
		got[w] = map[string]*int{}
		wg.Go(func() {
			for round := range 3 {
				for i := range keys {
					k := fmt.Sprint((i + w*37 + round) % keys)
					v := c.get(k, create)
					if prev, ok := got[w][k]; ok && prev != v {
						t.Errorf("key %s: two values", k)
					}
					got[w][k] = v
				}
			}
		})
	}
	wg.Wait()
	for i := range keys {
		k := fmt.Sprint(i)
		if created[k] != 1 {
			t.Errorf("key %s created %d times", k, created[k])
		}
		for w := 1; w < workers; w++ {
			if got[w][k] != got[0][k] {
				t.Errorf("key %s: workers 0 and %d got different values", k, w)
			}
		}
	}
	if m := c.read.Load(); m == nil || len(*m) == 0 {
		t.Errorf("nothing was published")
	}
}
