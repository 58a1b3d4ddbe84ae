package resource

import (
	"net/url"
	"strconv"
	"strings"

	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
)

func checkSelectorAndTargets(sel *typev1beta1.WorkloadSelector, ref *typev1beta1.PolicyTargetReference, refs []*typev1beta1.PolicyTargetReference) error {
	if sel != nil && (ref != nil || len(refs) > 0) {
		return errorf(specPath, "selector and targetRef/targetRefs are mutually exclusive")
	}
	if ref != nil && len(refs) > 0 {
		return errorf(specPath, "targetRef and targetRefs are mutually exclusive")
	}
	if sel != nil {
		if err := checkLabels(field(field(specPath, "selector"), "matchLabels"), sel.GetMatchLabels()); err != nil {
			return err
		}
	}
	check := func(path string, r *typev1beta1.PolicyTargetReference) error {
		if r.GetKind() == "" {
			return errorf(field(path, "kind"), "required")
		}
		if r.GetName() == "" {
			return errorf(field(path, "name"), "required")
		}
		if !isDNSSubdomain(r.GetName()) {
			return errorf(field(path, "name"), "%q is not a valid name", r.GetName())
		}
		return nil
	}
	if ref != nil {
		if err := check(field(specPath, "targetRef"), ref); err != nil {
			return err
		}
	}
	for i, r := range refs {
		if err := check(index(field(specPath, "targetRefs"), i), r); err != nil {
			return err
		}
	}
	return nil
}

func checkPeerAuthentication(o Object, s any) error {
	pa := s.(*security.PeerAuthentication)
	if err := checkSelectorAndTargets(pa.GetSelector(), nil, nil); err != nil {
		return err
	}
	if len(pa.GetPortLevelMtls()) > 0 && len(pa.GetSelector().GetMatchLabels()) == 0 {
		return errorf(field(specPath, "portLevelMtls"), "requires a selector with matchLabels (port-level settings apply to selected workloads only)")
	}
	ports := make([]uint32, 0, len(pa.GetPortLevelMtls()))
	for p := range pa.GetPortLevelMtls() {
		ports = append(ports, p)
	}
	sortUint32(ports)
	for _, p := range ports {
		path := key(field(specPath, "portLevelMtls"), strconv.FormatUint(uint64(p), 10))
		if err := checkPort(path, p); err != nil {
			return err
		}
		if pa.GetPortLevelMtls()[p] == nil {
			return errorf(path, "mode is required")
		}
	}
	return nil
}

func sortUint32(a []uint32) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

func checkRequestAuthentication(o Object, s any) error {
	ra := s.(*security.RequestAuthentication)
	if err := checkSelectorAndTargets(ra.GetSelector(), ra.GetTargetRef(), ra.GetTargetRefs()); err != nil {
		return err
	}
	issuers := map[string]int{}
	for i, r := range ra.GetJwtRules() {
		p := index(field(specPath, "jwtRules"), i)
		if r.GetIssuer() == "" {
			return errorf(field(p, "issuer"), "required")
		}
		if j, dup := issuers[r.GetIssuer()]; dup {
			return errorf(field(p, "issuer"), "duplicate issuer %q (also jwtRules[%d])", r.GetIssuer(), j)
		}
		issuers[r.GetIssuer()] = i
		switch {
		case r.GetJwksUri() != "" && r.GetJwks() != "":
			return errorf(p, "jwksUri and jwks are mutually exclusive")
		case r.GetJwksUri() == "" && r.GetJwks() == "":
			return errorf(p, "one of jwksUri or jwks is required")
		case r.GetJwksUri() != "":
			u, err := url.Parse(r.GetJwksUri())
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return errorf(field(p, "jwksUri"), "%q must be an http(s) URL", r.GetJwksUri())
			}
		default:
			if !jsonValid(r.GetJwks()) {
				return errorf(field(p, "jwks"), "must be a JSON Web Key Set (valid JSON)")
			}
		}
		for j, h := range r.GetFromHeaders() {
			if h.GetName() == "" {
				return errorf(field(index(field(p, "fromHeaders"), j), "name"), "required")
			}
		}
		for j, c := range r.GetOutputClaimToHeaders() {
			pc := index(field(p, "outputClaimToHeaders"), j)
			if c.GetHeader() == "" || c.GetClaim() == "" {
				return errorf(pc, "header and claim are required")
			}
		}
		if err := checkDuration(field(p, "timeout"), r.GetTimeout()); err != nil {
			return err
		}
	}
	return nil
}

func checkAuthorizationPolicy(o Object, s any) error {
	ap := s.(*security.AuthorizationPolicy)
	if err := checkSelectorAndTargets(ap.GetSelector(), ap.GetTargetRef(), ap.GetTargetRefs()); err != nil {
		return err
	}
	custom := ap.GetAction() == security.AuthorizationPolicy_CUSTOM
	if custom && ap.GetProvider().GetName() == "" {
		return errorf(field(field(specPath, "provider"), "name"), "required when action is CUSTOM")
	}
	if !custom && ap.GetProvider() != nil {
		return errorf(field(specPath, "provider"), "only allowed when action is CUSTOM")
	}
	for i, r := range ap.GetRules() {
		p := index(field(specPath, "rules"), i)
		for j, f := range r.GetFrom() {
			pf := field(index(field(p, "from"), j), "source")
			src := f.GetSource()
			if src == nil {
				return errorf(pf, "required")
			}
			lists := []namedList{
				{"principals", src.GetPrincipals()}, {"notPrincipals", src.GetNotPrincipals()},
				{"requestPrincipals", src.GetRequestPrincipals()}, {"notRequestPrincipals", src.GetNotRequestPrincipals()},
				{"namespaces", src.GetNamespaces()}, {"notNamespaces", src.GetNotNamespaces()},
				{"serviceAccounts", src.GetServiceAccounts()}, {"notServiceAccounts", src.GetNotServiceAccounts()},
				{"ipBlocks", src.GetIpBlocks()}, {"notIpBlocks", src.GetNotIpBlocks()},
				{"remoteIpBlocks", src.GetRemoteIpBlocks()}, {"notRemoteIpBlocks", src.GetNotRemoteIpBlocks()},
				{"trustDomains", src.GetTrustDomains()}, {"notTrustDomains", src.GetNotTrustDomains()},
			}
			if err := checkRuleLists(pf, lists); err != nil {
				return err
			}
			if len(src.GetServiceAccounts()) > 0 && (len(src.GetPrincipals()) > 0 || len(src.GetNamespaces()) > 0) {
				return errorf(field(pf, "serviceAccounts"), "cannot be combined with principals or namespaces")
			}
			for _, l := range lists[8:12] {
				for k, b := range l.values {
					if err := checkIPOrCIDR(index(field(pf, l.name), k), b); err != nil {
						return err
					}
				}
			}
		}
		for j, t := range r.GetTo() {
			pt := field(index(field(p, "to"), j), "operation")
			op := t.GetOperation()
			if op == nil {
				return errorf(pt, "required")
			}
			lists := []namedList{
				{"hosts", op.GetHosts()}, {"notHosts", op.GetNotHosts()},
				{"ports", op.GetPorts()}, {"notPorts", op.GetNotPorts()},
				{"methods", op.GetMethods()}, {"notMethods", op.GetNotMethods()},
				{"paths", op.GetPaths()}, {"notPaths", op.GetNotPaths()},
			}
			if err := checkRuleLists(pt, lists); err != nil {
				return err
			}
			for _, l := range lists[2:4] {
				for k, port := range l.values {
					n, err := strconv.ParseUint(port, 10, 16)
					if err != nil || n == 0 {
						return errorf(index(field(pt, l.name), k), "%q must be a port number 1..65535", port)
					}
				}
			}
			for _, l := range lists[6:8] {
				for k, path := range l.values {
					if path != "*" && !strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "*") {
						return errorf(index(field(pt, l.name), k), "%q must start with '/' (or be a '*' pattern)", path)
					}
				}
			}
		}
		for j, c := range r.GetWhen() {
			pc := index(field(p, "when"), j)
			if c.GetKey() == "" {
				return errorf(field(pc, "key"), "required")
			}
			if len(c.GetValues()) == 0 && len(c.GetNotValues()) == 0 {
				return errorf(pc, "one of values or notValues is required")
			}
			if err := checkRuleLists(pc, []namedList{{"values", c.GetValues()}, {"notValues", c.GetNotValues()}}); err != nil {
				return err
			}
		}
	}
	return nil
}

type namedList struct {
	name   string
	values []string
}

// checkRuleLists requires at least one non-empty list and no empty strings in any of them.
func checkRuleLists(path string, lists []namedList) error {
	any := false
	for _, l := range lists {
		for k, v := range l.values {
			if v == "" {
				return errorf(index(field(path, l.name), k), "must not be empty")
			}
		}
		any = any || len(l.values) > 0
	}
	if !any {
		return errorf(path, "must set at least one field")
	}
	return nil
}
