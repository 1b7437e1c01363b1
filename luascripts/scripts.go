// Package luascripts holds the Lua scripts that make every check-and-change
// of an item one atomic step in Redis.
package luascripts

import (
	_ "embed"
)

//go:embed lib.lua
var lib string

//go:embed reserve.lua
var reserve string

//go:embed confirm.lua
var confirm string

//go:embed cancel.lua
var cancel string

//go:embed expire.lua
var expire string

//go:embed seed.lua
var seed string

//go:embed reservation.lua
var reservation string

//go:embed restore.lua
var restore string

//go:embed bucket.lua
var bucket string

//go:embed take.lua
var take string

//go:embed give.lua
var give string

//go:embed freeze.lua
var freeze string

//go:embed credit.lua
var credit string

//go:embed ack.lua
var ack string

//go:embed prune.lua
var prune string

//go:embed ratelimit.lua
var ratelimit string

//go:embed charge.lua
var charge string

//go:embed index.lua
var index string

//go:embed lease.lua
var lease string

// Source is the text of one loadable script: the shared helpers of lib.lua
// followed by the script's own body.
type Source string

// The scripts, each ready for EVAL. See each .lua file for KEYS, ARGV and
// every return value.
func Reserve() Source     { return join(reserve) }
func Confirm() Source     { return join(confirm) }
func Cancel() Source      { return join(cancel) }
func Expire() Source      { return join(expire) }
func Seed() Source        { return join(seed) }
func Reservation() Source { return join(reservation) }
func Restore() Source     { return join(restore) }
func Bucket() Source      { return join(bucket) }
func Take() Source        { return join(take) }
func Give() Source        { return join(give) }
func Freeze() Source      { return join(freeze) }
func Credit() Source      { return join(credit) }

// Ack works on the outbox keys only, so it stands alone without lib.lua.
func Ack() Source { return Source(ack) }

// Prune, like Ack, stands alone.
func Prune() Source { return Source(prune) }

// Index works on one shard of the due and dirty indexes, not on an item: it
// stands alone too.
func Index() Source { return Source(index) }

// Lease renews a deployment-wide lease; it stands alone too.
func Lease() Source { return Source(lease) }

// RateLimit works on rate budgets, not items: it stands alone too.
func RateLimit() Source { return Source(ratelimit) }

// Charge settles rate budgets; it stands alone too.
func Charge() Source { return Source(charge) }

func join(body string) Source { return Source(lib + "\n" + body) }
