package main

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// redisACL is the ACL of the user the service runs as: docs/operations.md
// lists it (with the key prefix in place of "tlsacl"), and
// TestRunOnRedisTLSWithACLUser runs serve and its syncer under it.
const redisACL = "~tlsacl:* resetchannels -@all " +
	"+ping +auth +hello +client|setname +info +time +wait " +
	"+evalsha +eval +script|load " +
	"+get +set +del +exists +scan +type " +
	"+hget +hgetall +hmget +hset +hdel +hexists +hlen +hincrby " +
	"+sadd +srem +smembers +sscan " +
	"+zadd +zrem +zcard +zcount +zscore +zrange +zrangebyscore +zremrangebyscore " +
	"+xadd +xack +xdel +xlen +xrange +xrevrange +xtrim +xreadgroup +xautoclaim +xpending " +
	"+xgroup|create +xinfo|consumers +xinfo|groups +xinfo|stream"

// TestACLDocumented: the ACL that the README and docs/operations.md give
// operators is the one TestRunOnRedisTLSWithACLUser runs the service under.
func TestACLDocumented(t *testing.T) {
	want := strings.Fields(strings.ReplaceAll(redisACL, "tlsacl:", "flashsale:"))
	slices.Sort(want)
	for _, path := range []string{"../README.md", "../docs/operations.md"} {
		doc, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		_, block, ok := strings.Cut(string(doc), "ACL SETUSER flashsale on >PASSWORD ")
		if !ok {
			t.Errorf("%s: no ACL SETUSER flashsale block", path)
			continue
		}
		block, _, _ = strings.Cut(block, "```")
		got := strings.Fields(block)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s lists the ACL\n%v\nwant (the one tested)\n%v", path, got, want)
		}
	}
}
