package filter

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// Options are the sources of time and randomness of a chain. The zero value
// is the production setting; tests replace them to make faults and rate
// limits deterministic.
type Options struct {
	// Rand returns a uniform integer in [0, n), n > 0. It must be safe for
	// concurrent use. Nil means math/rand/v2.
	Rand func(n uint64) uint64
	// Now returns the current time for token buckets. Nil means time.Now.
	Now func() time.Time
}

// spec is what a filter's constructor gets besides its config.
type spec struct {
	// name is the HttpFilter name: the key of its per-route config.
	name string
	// disabled is HttpFilter.disabled: skip unless a route enables it.
	disabled bool
	rand     func(n uint64) uint64
	now      func() time.Time
}

// BuildWithOptions is Build with explicit sources of time and randomness.
func BuildWithOptions(filters []*hcmv3.HttpFilter, router Handler, o Options) (Handler, error) {
	if router == nil {
		return nil, errors.New("http_filters: no router handler given")
	}
	if o.Rand == nil {
		o.Rand = defaultRand
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if len(filters) == 0 {
		return nil, errors.New("http_filters: empty, must end with envoy.filters.http.router")
	}
	var chain []Filter
	sawRouter := false
	seen := make(map[string]bool, len(filters))
	for i, hf := range filters {
		path := fmt.Sprintf("http_filters[%d]", i)
		name := hf.GetName()
		if name == "" {
			return nil, fmt.Errorf("%s.name: empty", path)
		}
		path = fmt.Sprintf("http_filters[%d](%s)", i, quoteName(name))
		if seen[name] {
			return nil, fmt.Errorf("%s.name: duplicate filter name", path)
		}
		seen[name] = true
		if err := onlyFields(hf, path, "name", "typed_config", "is_optional", "disabled"); err != nil {
			return nil, err
		}
		if err := checkUnknown(hf.ProtoReflect(), path); err != nil {
			return nil, err
		}
		cfg := hf.GetTypedConfig()
		k, ok := lookup(cfg.GetTypeUrl(), name)
		if !ok {
			if hf.GetIsOptional() {
				continue // Envoy skips optional filters it does not know
			}
			if cfg != nil {
				return nil, fmt.Errorf("%s.typed_config: filter type %q is not supported by canton", path, cfg.GetTypeUrl())
			}
			return nil, fmt.Errorf("%s: filter is not supported by canton (and has no typed_config)", path)
		}
		last := i == len(filters)-1
		if k.terminal {
			if !last {
				return nil, fmt.Errorf("%s: %s must be the last filter", path, k.name)
			}
			if hf.GetDisabled() {
				return nil, fmt.Errorf("%s.disabled: the router cannot be disabled", path)
			}
			sawRouter = true
		} else if last {
			return nil, fmt.Errorf("%s: the last filter must be envoy.filters.http.router", path)
		}
		s := spec{name: name, disabled: hf.GetDisabled(), rand: o.Rand, now: o.Now}
		f, err := k.build(s, cfg, path+".typed_config")
		if err != nil {
			return nil, err
		}
		if f != nil {
			chain = append(chain, f)
		}
	}
	if !sawRouter {
		return nil, errors.New("http_filters: must end with envoy.filters.http.router")
	}
	var h Handler = router
	for i := len(chain) - 1; i >= 0; i-- {
		h = &link{f: chain[i], next: h}
	}
	return h, nil
}

func build(filters []*hcmv3.HttpFilter, router Handler) (Handler, error) {
	return BuildWithOptions(filters, router, Options{})
}

// link is one step of a built chain.
type link struct {
	f    Filter
	next Handler
}

func (l *link) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	return l.f.ServeHTTP(w, r, l.next)
}
