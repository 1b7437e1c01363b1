package redisstore

import (
	"context"
	"errors"

	goredis "github.com/redis/go-redis/v9"
)

// reloadOnFailure makes a cluster client fetch the slot map again as soon
// as a command or pipeline fails for want of its node (a refused or broken
// connection, CLUSTERDOWN), rather than at go-redis's periodic reload.
//
// go-redis reloads the slot map at once on MOVED and ASK, but a master that
// died (kill -9, a lost machine) answers nothing: its connections fail, the
// client marks it failing and keeps sending its slots to it, since the map
// still names it, until the periodic reload, every 60 s. The cluster had
// promoted its replica within a few seconds: measured, 57 s of 503s on the
// dead master's items after a 2.6 s promotion. ReloadState is lazy and
// coalesced (one CLUSTER SLOTS in flight, then 200 ms apart at most), so a
// burst of failures costs a few CLUSTER SLOTS, and the first after the
// promotion routes the slots to the new master.
func reloadOnFailure(cc *goredis.ClusterClient) {
	cc.AddHook(clusterReloadHook{cc})
}

type clusterReloadHook struct{ cc *goredis.ClusterClient }

func (clusterReloadHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h clusterReloadHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		err := next(ctx, cmd)
		if nodeLost(err) {
			h.cc.ReloadState(ctx)
		}
		return err
	}
}

func (h clusterReloadHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			if nodeLost(c.Err()) {
				h.cc.ReloadState(ctx)
				break
			}
		}
		return err
	}
}

// nodeLost reports whether err says the node that was asked is gone or no
// longer serves its slots, as opposed to an answer from it (a script error,
// a redirect go-redis follows itself) or the caller's own deadline.
func nodeLost(err error) bool {
	if err == nil || errors.Is(err, goredis.Nil) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var rerr goredis.Error
	if errors.As(err, &rerr) {
		return goredis.HasErrorPrefix(err, "CLUSTERDOWN") || goredis.HasErrorPrefix(err, "MASTERDOWN")
	}
	// Any other error but a closed client is not Redis's answer: EOF, a
	// reset or refused connection, a dial or read timeout, a pool timeout.
	return !errors.Is(err, goredis.ErrClosed)
}
