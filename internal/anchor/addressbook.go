package anchor

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/resource"
	"canton.dev/canton/internal/scope"
)

// The address book. Every anchor's address is published as an Anchor object
// in the root scope's namespace (publishAddressBook, by the root's leader,
// from what it admitted). A replica of the root scope reads them from its
// own state (reconcileOnce); every other anchor follows them with a Get and
// a Watch on the root scope's anchors, as followMeshWide does for the
// mesh-wide policies. So an anchor outside the root scope learns the
// addresses of anchors that join after it, and can replicate a scope with
// them or forward requests to them. Addresses learned are saved (anchor.json),
// so a restarted anchor reaches its peers while the root scope is down.

// followAddressBook keeps the address book in line with the root scope's
// Anchor objects until ctx ends, while the root scope is not hosted here
// (reconcileOnce reads the local replica then).
func (a *Anchor) followAddressBook(ctx context.Context) {
	a.followRootScope(ctx, "the address book", a.listAddresses,
		func(_ context.Context, _ apipb.AnchorClient, event string, o resource.Object) error {
			if event != scope.EventPut || o.Kind != "Anchor" {
				return nil
			}
			if err := a.setAddresses(anchorAddresses([]resource.Object{o}), false); err != nil {
				a.log.Warn("address book not saved", "err", err)
			}
			return nil
		})
}

// followRootScope follows the root namespace from the root scope's anchors
// until ctx ends, while the root scope is not hosted here: list, then a
// Watch from the revision list read, calling onEvent for every object of the
// root namespace that changes; on failure it retries with backoff, keeping
// what it had. what names the follower in logs.
func (a *Anchor) followRootScope(ctx context.Context, what string,
	list func(context.Context, apipb.AnchorClient) (uint64, error),
	onEvent func(ctx context.Context, c apipb.AnchorClient, event string, o resource.Object) error) {
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		_, remote, err := a.governing(a.meta.Mesh)
		if _, ok := a.scope(a.meta.Mesh); ok {
			// Hosted here: the local replica is read instead; look again
			// later, in case this anchor stops replicating the root.
			err, backoff = errors.New("hosted here"), 10*time.Second
		} else if err == nil {
			err = a.forward(ctx, remote, func(ctx context.Context, c apipb.AnchorClient) error {
				rev, err := list(ctx, c)
				if err != nil {
					return err
				}
				backoff = 200 * time.Millisecond
				stream, err := c.Watch(ctx, &apipb.WatchRequest{Scope: a.meta.Mesh, FromRevision: rev})
				if err != nil {
					return err
				}
				for {
					ev, err := stream.Recv()
					if err != nil {
						return err
					}
					var o resource.Object
					if json.Unmarshal(ev.Object, &o) != nil || o.Namespace != a.meta.Mesh {
						continue
					}
					if err := onEvent(ctx, c, ev.Type, o); err != nil {
						return err
					}
				}
			})
		}
		if ctx.Err() != nil {
			return
		}
		a.log.Debug("not following the root scope", "what", what, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// listAddresses reads the root scope's Anchor objects from c into the
// address book and returns the revision they were read at.
func (a *Anchor) listAddresses(ctx context.Context, c apipb.AnchorClient) (uint64, error) {
	resp, err := c.Get(ctx, &apipb.GetRequest{Scope: a.meta.Mesh, Kind: "Anchor", Namespace: a.meta.Mesh})
	if err != nil {
		return 0, err
	}
	objs, err := decodeObjects(resp.Objects)
	if err != nil {
		return 0, err
	}
	if err := a.setAddresses(anchorAddresses(objs), false); err != nil {
		a.log.Warn("address book not saved", "err", err)
	}
	return resp.Revision, nil
}

// anchorAddresses maps the Anchor objects among objs to their addresses.
func anchorAddresses(objs []resource.Object) map[string]string {
	out := map[string]string{}
	for _, o := range objs {
		if o.Kind != "Anchor" {
			continue
		}
		if addr := anchorAddress(o); addr != "" {
			out[o.Name] = addr
		}
	}
	return out
}
