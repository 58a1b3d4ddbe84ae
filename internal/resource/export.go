package resource

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// ExportSpec is the spec of an Export (canton.dev/v1): which services of the Export's
// namespace other scopes may resolve and reach, like Consul's exported-services. A scope
// answers another scope's resolution of a service only if an Export in the service's
// namespace covers the service and the asking scope; within a scope exports do not apply
// (Istio exportTo does).
type ExportSpec struct {
	// Services are names of Services in the Export's namespace, or the single entry "*"
	// (every service of the namespace). At least one, no duplicates.
	Services []string `json:"services"`
	// To are the domains of the scopes that may import the services (exactly those scopes,
	// not their children), or the single entry "*" (every scope). At least one, no duplicates.
	To []string `json:"to"`
	// Ports restricts the export to these ports of the services, by name or number. Empty:
	// every port.
	Ports []PortRef `json:"ports,omitempty"`
}

// PortRef names a service port by its name ("http") or its number (8080). In manifests a
// number may be written as a number or a string; the canonical form of a number is a JSON
// number.
type PortRef string

// Number returns the port number if the reference is numeric and at most 65535.
func (p PortRef) Number() (uint32, bool) {
	n, err := strconv.ParseUint(string(p), 10, 16)
	return uint32(n), err == nil
}

// numeric reports whether the reference is written as a number (digits only).
func (p PortRef) numeric() bool {
	if p == "" {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

// Matches reports whether the reference designates port sp.
func (p PortRef) Matches(sp ServicePort) bool {
	if n, ok := p.Number(); ok {
		return n == sp.Port
	}
	return string(p) == sp.Name
}

// MarshalJSON writes a number for a numeric reference and a string otherwise.
func (p PortRef) MarshalJSON() ([]byte, error) {
	if n, ok := p.Number(); ok {
		return []byte(strconv.FormatUint(uint64(n), 10)), nil
	}
	return json.Marshal(string(p))
}

// UnmarshalJSON accepts a JSON string or a non-negative integer.
func (p *PortRef) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*p = PortRef(s)
		return nil
	}
	var n uint64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("a port must be a name or a number, not %s", b)
	}
	*p = PortRef(strconv.FormatUint(n, 10))
	return nil
}

// checkGeneric lets checkGo accept both JSON forms of a port reference.
func (p PortRef) checkGeneric(path string, v any) error {
	switch v := v.(type) {
	case string:
		return nil
	case json.Number:
		if _, err := strconv.ParseUint(string(v), 10, 16); err != nil {
			return errorf(path, "port must be 1..65535, not %s", v)
		}
		return nil
	default:
		return errorf(path, "must be a port name or number, not %s", jsonType(v))
	}
}

// genericChecker is implemented by spec field types that check their generic JSON value
// themselves (instead of checkGo's check by reflect.Kind).
type genericChecker interface {
	checkGeneric(path string, v any) error
}

var genericCheckerType = reflect.TypeOf((*genericChecker)(nil)).Elem()

func (s *ExportSpec) validate(o Object) error {
	p := field(specPath, "services")
	if err := checkStarList(p, s.Services, "a service name", isDNSLabel); err != nil {
		return err
	}
	if err := checkStarList(field(specPath, "to"), s.To, "a scope domain", isDNSSubdomain); err != nil {
		return err
	}
	pp := field(specPath, "ports")
	seen := map[PortRef]int{}
	for i, port := range s.Ports {
		if port.numeric() {
			n, ok := port.Number()
			if !ok || n == 0 {
				return errorf(index(pp, i), "port %s must be 1..65535", string(port))
			}
			port = PortRef(strconv.FormatUint(uint64(n), 10)) // "08080" and 8080 are one port
		} else if !isDNSLabel(string(port)) {
			return errorf(index(pp, i), "%q must be a port name (a DNS-1123 label) or a number 1..65535", string(port))
		}
		if j, dup := seen[port]; dup {
			return errorf(index(pp, i), "duplicate port %s (also ports[%d])", port, j)
		}
		seen[port] = i
	}
	return nil
}

// checkStarList checks a non-empty list of unique entries, each valid or the single "*".
func checkStarList(path string, list []string, what string, valid func(string) bool) error {
	if len(list) == 0 {
		return errorf(path, "at least one entry is required (%s, or \"*\")", what)
	}
	seen := map[string]int{}
	for i, e := range list {
		if e == "*" {
			if len(list) > 1 {
				return errorf(index(path, i), "\"*\" cannot be combined with other entries")
			}
		} else if !valid(e) {
			return errorf(index(path, i), "%q must be %s or \"*\"", e, what)
		}
		if j, dup := seen[e]; dup {
			return errorf(index(path, i), "duplicate entry %q (also [%d])", e, j)
		}
		seen[e] = i
	}
	return nil
}

// Covers reports whether the Export lets scope import service (a service of the Export's
// namespace); ExportsPort says which of its ports.
func (s *ExportSpec) Covers(service, scope string) bool {
	return listHas(s.Services, strings.ToLower(service)) && listHas(s.To, strings.ToLower(scope))
}

// ExportsPort reports whether the Export includes port sp (every port when Ports is empty).
func (s *ExportSpec) ExportsPort(sp ServicePort) bool {
	if len(s.Ports) == 0 {
		return true
	}
	for _, p := range s.Ports {
		if p.Matches(sp) {
			return true
		}
	}
	return false
}

func listHas(list []string, s string) bool {
	for _, e := range list {
		if e == "*" || e == s {
			return true
		}
	}
	return false
}
