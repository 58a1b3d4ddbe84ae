package filter

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"weak"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// unmarshalAny decodes a into m. A type mismatch or a field this build of
// the API does not know (an unknown field number) is an error naming path.
func unmarshalAny(a *anypb.Any, m proto.Message, path string) error {
	want := typeURL(m)
	if a.GetTypeUrl() != want {
		return fmt.Errorf("%s: type %q, want %q", path, a.GetTypeUrl(), want)
	}
	if err := (proto.UnmarshalOptions{}).Unmarshal(a.GetValue(), m); err != nil {
		return fmt.Errorf("%s: decoding %s: %w", path, want, err)
	}
	return checkUnknown(m.ProtoReflect(), path)
}

// checkUnknown rejects messages (recursively) that carry unknown fields.
func checkUnknown(m protoreflect.Message, path string) error {
	if len(m.GetUnknown()) > 0 {
		return fmt.Errorf("%s: unknown field in %s", path, m.Descriptor().FullName())
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil {
			return true
		}
		p := path + "." + string(fd.Name())
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = checkUnknown(l.Get(i).Message(), fmt.Sprintf("%s[%d]", p, i))
			}
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				if fd.MapValue().Message() != nil {
					err = checkUnknown(mv.Message(), fmt.Sprintf("%s[%v]", p, k.Interface()))
				}
				return err == nil
			})
		default:
			err = checkUnknown(v.Message(), p)
		}
		return err == nil
	})
	return err
}

// onlyFields returns an error naming the first populated field of m that is
// not in allowed. Proto3 scalars at their zero value count as unset, which
// is also Envoy's default for them.
func onlyFields(m proto.Message, path string, allowed ...string) error {
	var bad string
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !slices.Contains(allowed, string(fd.Name())) {
			bad = string(fd.Name())
			return false
		}
		return true
	})
	if bad != "" {
		return fmt.Errorf("%s.%s: not supported by canton", path, bad)
	}
	return nil
}

// percent is a FractionalPercent resolved to numerator/denominator.
type percent struct {
	num, den uint64
}

func parsePercent(p *typev3.FractionalPercent, path string) (percent, error) {
	if p == nil {
		// Envoy's default for an absent FractionalPercent is 0/100.
		return percent{num: 0, den: 100}, nil
	}
	if err := onlyFields(p, path, "numerator", "denominator"); err != nil {
		return percent{}, err
	}
	var den uint64
	switch p.GetDenominator() {
	case typev3.FractionalPercent_HUNDRED:
		den = 100
	case typev3.FractionalPercent_TEN_THOUSAND:
		den = 10_000
	case typev3.FractionalPercent_MILLION:
		den = 1_000_000
	default:
		return percent{}, fmt.Errorf("%s.denominator: unknown value %d", path, p.GetDenominator())
	}
	// Like Envoy, a numerator above the denominator means 100%.
	return percent{num: min(uint64(p.GetNumerator()), den), den: den}, nil
}

// sample reports whether a request falls into p, drawing from rnd.
func (p percent) sample(rnd func(n uint64) uint64) bool {
	switch {
	case p.num == 0:
		return false
	case p.num >= p.den:
		return true
	}
	return rnd(p.den) < p.num
}

// defaultRand is the production source of randomness: math/rand/v2's
// per-thread generator, safe for concurrent use and allocation-free.
func defaultRand(n uint64) uint64 { return rand.Uint64N(n) }

// filterConfigURL is the type URL of the route-level FilterConfig wrapper.
var filterConfigURL = typeURL(&routev3.FilterConfig{})

// routeEntry is a decoded typed_per_filter_config value.
type routeEntry[T any] struct {
	val      T
	hasVal   bool // false for a FilterConfig without config
	disabled bool // FilterConfig.disabled
	skip     bool // FilterConfig.is_optional with a type this filter does not take
	err      error
}

// routeCache decodes a filter's typed_per_filter_config values once per
// *anypb.Any. Route configurations are immutable snapshots, so the pointer
// identifies the value; entries are dropped when the Any is collected, so a
// route update (which brings new Any values) also brings fresh state, such
// as fresh token buckets, exactly as a new route table does in Envoy.
type routeCache[T any] struct {
	typeURL string
	parse   func(a *anypb.Any, path string) (T, error)
	m       sync.Map // weak.Pointer[anypb.Any] -> *routeEntry[T]
}

func (c *routeCache[T]) get(a *anypb.Any) *routeEntry[T] {
	k := weak.Make(a)
	if v, ok := c.m.Load(k); ok {
		return v.(*routeEntry[T])
	}
	e := c.decode(a, "typed_per_filter_config")
	v, loaded := c.m.LoadOrStore(k, e)
	if !loaded {
		runtime.AddCleanup(a, func(k weak.Pointer[anypb.Any]) { c.m.Delete(k) }, k)
	}
	return v.(*routeEntry[T])
}

func (c *routeCache[T]) decode(a *anypb.Any, path string) *routeEntry[T] {
	e := &routeEntry[T]{}
	if a.GetTypeUrl() == filterConfigURL {
		var fc routev3.FilterConfig
		if e.err = unmarshalAny(a, &fc, path); e.err != nil {
			return e
		}
		e.disabled = fc.GetDisabled()
		if fc.GetConfig() == nil || e.disabled {
			return e
		}
		if fc.GetIsOptional() && fc.GetConfig().GetTypeUrl() != c.typeURL {
			e.skip = true
			return e
		}
		a, path = fc.GetConfig(), path+".config"
	}
	e.val, e.err = c.parse(a, path)
	e.hasVal = e.err == nil
	return e
}

// resolve returns the configuration a filter applies to the request: the
// route's override when there is one, else def. ok is false when the filter
// must be skipped for this request (disabled on the route, or disabled in the
// HttpConnectionManager and not enabled by the route).
func resolve[T any](r routeLookup, c *routeCache[T], name string, disabledByDefault bool, def T) (cfg T, ok bool, err error) {
	a, found := r.lookup(name)
	if !found {
		return def, !disabledByDefault, nil
	}
	e := c.get(a)
	switch {
	case e.err != nil:
		return def, false, fmt.Errorf("filter %s: %w", name, e.err)
	case e.disabled:
		return def, false, nil
	case e.hasVal:
		return e.val, true, nil
	}
	return def, true, nil // FilterConfig enabling the filter with its own config, or optional and unknown
}

// routeLookup finds a filter's per-route config for the current request.
type routeLookup struct{ ri *reqInfo }

func (r routeLookup) lookup(name string) (*anypb.Any, bool) {
	if r.ri == nil || r.ri.route == nil {
		return nil, false
	}
	a := r.ri.route[name]
	return a, a != nil
}

// CheckRouteConfig validates a route's (or virtual host's)
// typed_per_filter_config: every value must be a per-route config of a
// supported filter (identified by its type URL), or a FilterConfig wrapper
// of one, or an optional FilterConfig. The proxy calls it when it receives a
// RouteConfiguration so that bad values are NACKed, not found at request time.
func CheckRouteConfig(cfg map[string]*anypb.Any) error {
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, name := range keys {
		if err := checkRouteValue(name, cfg[name]); err != nil {
			return err
		}
	}
	return nil
}

func checkRouteValue(name string, a *anypb.Any) error {
	path := fmt.Sprintf("typed_per_filter_config[%q]", name)
	if a == nil {
		return fmt.Errorf("%s: empty value", path)
	}
	if a.GetTypeUrl() == filterConfigURL {
		var fc routev3.FilterConfig
		if err := unmarshalAny(a, &fc, path); err != nil {
			return err
		}
		if fc.GetDisabled() || fc.GetConfig() == nil {
			return nil
		}
		inner := fc.GetConfig()
		if k, ok := lookup(inner.GetTypeUrl(), ""); ok && k.perRoute != nil {
			return k.perRoute(inner, path+".config")
		}
		if fc.GetIsOptional() {
			return nil
		}
		return fmt.Errorf("%s.config: per-route config type %q is not supported by canton", path, inner.GetTypeUrl())
	}
	if k, ok := lookup(a.GetTypeUrl(), ""); ok && k.perRoute != nil {
		return k.perRoute(a, path)
	}
	return fmt.Errorf("%s: per-route config type %q is not supported by canton", path, a.GetTypeUrl())
}

// quoteName keeps filter names printable in errors and logs.
func quoteName(s string) string {
	if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Sprintf("%q", s)
	}
	return s
}
