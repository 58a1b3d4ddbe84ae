package route

import (
	"net/http"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func fwd(cluster string) *routev3.Route_Route {
	return &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}}
}

func prefix(p string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}}
}

func hdr(name string, spec isHM, invert bool) *routev3.HeaderMatcher {
	h := &routev3.HeaderMatcher{Name: name, InvertMatch: invert}
	switch s := spec.(type) {
	case *routev3.HeaderMatcher_StringMatch:
		h.HeaderMatchSpecifier = s
	case *routev3.HeaderMatcher_PresentMatch:
		h.HeaderMatchSpecifier = s
	case *routev3.HeaderMatcher_RangeMatch:
		h.HeaderMatchSpecifier = s
	}
	return h
}

type isHM interface{}

func exact(v string) *routev3.HeaderMatcher_StringMatch {
	return &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}}}
}

func testTable(t testing.TB) *Table {
	rc := &routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{
		{Name: "exact", Domains: []string{"api.example.com", "api.example.com:8080"}, Routes: []*routev3.Route{
			{Name: "hdr-exact", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
				Headers: []*routev3.HeaderMatcher{hdr("x-version", exact("v2"), false)}}, Action: fwd("v2")},
			{Name: "hdr-invert", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/inv"},
				Headers: []*routev3.HeaderMatcher{hdr("x-debug", exact("1"), true)}}, Action: fwd("not-debug")},
			{Name: "present", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
				Headers: []*routev3.HeaderMatcher{hdr("x-canary", &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}, false)}}, Action: fwd("canary")},
			{Name: "range", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
				Headers: []*routev3.HeaderMatcher{hdr("x-shard", &routev3.HeaderMatcher_RangeMatch{RangeMatch: &typev3.Int64Range{Start: 10, End: 20}}, false)}}, Action: fwd("shard")},
			{Name: "method", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
				Headers: []*routev3.HeaderMatcher{hdr(":method", exact("DELETE"), false)}}, Action: fwd("deleter")},
			{Name: "query", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
				QueryParameters: []*routev3.QueryParameterMatcher{{Name: "debug", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{
					StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "a b"}}}}}}, Action: fwd("query")},
			{Name: "exact-path", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/login"}}, Action: fwd("login")},
			{Name: "regex", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/users/[0-9]+"}}}, Action: fwd("user")},
			{Name: "sep", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/docs"}}, Action: fwd("docs")},
			{Name: "nocase", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/CASE"}, CaseSensitive: wrapperspb.Bool(false)}, Action: fwd("nocase")},
			{Name: "grpc", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Grpc: &routev3.RouteMatch_GrpcRouteMatchOptions{}}, Action: fwd("grpc")},
			{Name: "default", Match: prefix("/"), Action: fwd("default")},
		}},
		{Name: "suffix-long", Domains: []string{"*.b.example.com"}, Routes: []*routev3.Route{{Match: prefix("/"), Action: fwd("suffix-long")}}},
		{Name: "suffix", Domains: []string{"*.example.com"}, Routes: []*routev3.Route{{Match: prefix("/"), Action: fwd("suffix")}}},
		{Name: "prefix", Domains: []string{"internal.*"}, Routes: []*routev3.Route{{Match: prefix("/"), Action: fwd("prefix")}}},
		{Name: "star", Domains: []string{"*"}, Routes: []*routev3.Route{{Match: prefix("/"), Action: fwd("star")}}},
	}}
	tb, err := Compile(rc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func TestSelect(t *testing.T) {
	tb := testTable(t)
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	tests := []struct {
		host, method, path, query string
		header                    http.Header
		wantVH, wantCluster       string
	}{
		{"api.example.com", "GET", "/x", "", nil, "exact", "default"},
		{"API.Example.COM", "GET", "/x", "", nil, "exact", "default"},
		{"api.example.com:8080", "GET", "/x", "", nil, "exact", "default"},
		{"api.example.com:9090", "GET", "/x", "", nil, "star", "star"},
		{"a.b.example.com", "GET", "/", "", nil, "suffix-long", "suffix-long"},
		{"x.example.com", "GET", "/", "", nil, "suffix", "suffix"},
		{"example.com", "GET", "/", "", nil, "star", "star"},
		{"internal.corp", "GET", "/", "", nil, "prefix", "prefix"},
		{"api.example.com", "GET", "/", "", h("X-Version", "v2"), "exact", "v2"},
		{"api.example.com", "GET", "/", "", h("X-Version", "v3"), "exact", "default"},
		{"api.example.com", "GET", "/inv", "", h("X-Debug", "1"), "exact", "default"},
		{"api.example.com", "GET", "/inv", "", h("X-Debug", "0"), "exact", "not-debug"},
		{"api.example.com", "GET", "/inv", "", nil, "exact", "default"}, // absent header: inverted string match fails
		{"api.example.com", "GET", "/", "", h("X-Canary", ""), "exact", "canary"},
		{"api.example.com", "GET", "/", "", h("X-Shard", "15"), "exact", "shard"},
		{"api.example.com", "GET", "/", "", h("X-Shard", "20"), "exact", "default"},
		{"api.example.com", "GET", "/", "", h("X-Shard", "x"), "exact", "default"},
		{"api.example.com", "DELETE", "/", "", nil, "exact", "deleter"},
		{"api.example.com", "GET", "/", "debug=a+b", nil, "exact", "query"},
		{"api.example.com", "GET", "/", "x=1&debug=a%20b", nil, "exact", "query"},
		{"api.example.com", "GET", "/", "debug=ab", nil, "exact", "default"},
		{"api.example.com", "GET", "/login", "", nil, "exact", "login"},
		{"api.example.com", "GET", "/login/x", "", nil, "exact", "default"},
		{"api.example.com", "GET", "/users/42", "", nil, "exact", "user"},
		{"api.example.com", "GET", "/users/42/x", "", nil, "exact", "default"},
		{"api.example.com", "GET", "/docs", "", nil, "exact", "docs"},
		{"api.example.com", "GET", "/docs/a", "", nil, "exact", "docs"},
		{"api.example.com", "GET", "/docsx", "", nil, "exact", "default"},
		{"api.example.com", "GET", "/case/x", "", nil, "exact", "nocase"},
		{"api.example.com", "POST", "/svc/M", "", h("Content-Type", "application/grpc+proto"), "exact", "grpc"},
		{"api.example.com", "POST", "/svc/M", "", h("Content-Type", "application/grpcx"), "exact", "default"},
	}
	for _, tt := range tests {
		hd := tt.header
		if hd == nil {
			hd = http.Header{}
		}
		r := &Request{Method: tt.method, Host: tt.host, Path: tt.path, Query: tt.query, Scheme: "http", Header: hd}
		vh, rt := tb.Select(r)
		if vh == nil || rt == nil {
			t.Errorf("%s %s%s: no match, want %s/%s", tt.method, tt.host, tt.path, tt.wantVH, tt.wantCluster)
			continue
		}
		if vh.Name != tt.wantVH || rt.Forward.Cluster != tt.wantCluster {
			t.Errorf("%s %s%s?%s %v: got %s/%s, want %s/%s", tt.method, tt.host, tt.path, tt.query, tt.header, vh.Name, rt.Forward.Cluster, tt.wantVH, tt.wantCluster)
		}
	}
}

func TestCompileErrorsNameTheField(t *testing.T) {
	tests := []struct {
		rc   *routev3.RouteConfiguration
		want string
	}{
		{&routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{{Domains: []string{"a"}, Routes: []*routev3.Route{
			{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "("}}}, Action: fwd("c")}}}}},
			"virtual_hosts[0].routes[0].match.safe_regex"},
		{&routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{{Domains: []string{"a"}}, {Domains: []string{"A"}}}},
			`virtual_hosts[1].domains[0]: domain "a" appears twice`},
		{&routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{{Domains: []string{"a.*.b"}}}},
			"virtual_hosts[0].domains[0]"},
		{&routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{{Domains: []string{"a"}, Routes: []*routev3.Route{
			{Match: prefix("/"), Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"},
				RetryPolicy: &routev3.RetryPolicy{RetryOn: "5xx,bogus"}}}}}}}},
			`virtual_hosts[0].routes[0].route.retry_policy.retry_on: unsupported condition "bogus"`},
		{&routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{{Domains: []string{"a"}, Routes: []*routev3.Route{{Match: prefix("/"), Action: fwd("c"),
			RequestHeadersToRemove: []string{"host"}}}}}},
			"virtual_hosts[0].routes[0].request_headers_to_remove[0]"},
	}
	for _, tt := range tests {
		_, err := Compile(tt.rc, Options{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Compile error = %v, want one containing %q", err, tt.want)
		}
	}
}

func TestWeightedSplitAndRewrites(t *testing.T) {
	rc := &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{{Domains: []string{"*"}, Routes: []*routev3.Route{
		{Match: prefix("/api/"), Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
				{Name: "a", Weight: wrapperspb.UInt32(80)}, {Name: "b", Weight: wrapperspb.UInt32(20)}}}},
			PrefixRewrite: "/v2/"}}},
		{Match: prefix("/r"), Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
			SchemeRewriteSpecifier: &routev3.RedirectAction_HttpsRedirect{HttpsRedirect: true},
			PathRewriteSpecifier:   &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: "/new"}}}},
	}}}}
	tb, err := Compile(rc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := &Request{Method: "GET", Host: "h:8080", Path: "/api/x", Scheme: "http", Header: http.Header{}}
	_, rt := tb.Select(r)
	counts := map[string]int{}
	const n = 10000
	for i := 0; i < n; i++ {
		counts[rt.Forward.PickCluster(r)]++
	}
	if a := float64(counts["a"]) / n; a < 0.77 || a > 0.83 {
		t.Errorf("share of a = %.3f, want 0.80 +- 0.03", a)
	}
	if got := rt.Forward.RewritePath(rt, r.Path); got != "/v2/x" {
		t.Errorf("prefix rewrite = %q", got)
	}
	r = &Request{Method: "GET", Host: "h:8080", Path: "/rx", Query: "q=1", Scheme: "http", Header: http.Header{}}
	_, rt = tb.Select(r)
	if got := rt.Redirect.Location(rt, r); got != "https://h/newx?q=1" || rt.Redirect.Status != 301 {
		t.Errorf("redirect = %q %d", got, rt.Redirect.Status)
	}
}

func TestSelectDoesNotAllocate(t *testing.T) {
	tb := testTable(t)
	r := &Request{Method: "GET", Host: "API.example.com", Path: "/users/42", Query: "x=1&debug=zz", Scheme: "http",
		Header: http.Header{"X-Version": {"v1"}, "X-Shard": {"3"}}}
	if n := testing.AllocsPerRun(200, func() { tb.Select(r) }); n != 0 {
		t.Errorf("Select allocates %v times per call, want 0", n)
	}
}

func BenchmarkSelect(b *testing.B) {
	tb := testTable(b)
	r := &Request{Method: "GET", Host: "api.example.com", Path: "/users/42", Query: "x=1", Scheme: "http",
		Header: http.Header{"X-Version": {"v1"}, "User-Agent": {"bench"}}}
	b.ReportAllocs()
	for b.Loop() {
		if _, rt := tb.Select(r); rt == nil {
			b.Fatal("no route")
		}
	}
}

// FuzzSelect matches arbitrary requests against the test table: it must never panic, and a request
// for api.example.com always finds a route (the table ends with a catch-all).
func FuzzSelect(f *testing.F) {
	f.Add("api.example.com", "GET", "/users/1", "debug=a+b", "v2")
	f.Add("x.example.com:80", "DELETE", "/docs/", "%zz", "")
	f.Add("", "", "", "&&==", "\x00")
	tb := testTable(f)
	f.Fuzz(func(t *testing.T, host, method, path, query, version string) {
		r := &Request{Method: method, Host: host, Path: path, Query: query, Scheme: "http", Header: http.Header{"X-Version": {version}}}
		vh, rt := tb.Select(r)
		if vh == nil {
			t.Fatalf("no virtual host for %q despite a '*' domain", host)
		}
		if strings.EqualFold(host, "api.example.com") && strings.HasPrefix(path, "/") && rt == nil {
			t.Fatalf("no route for %q %q", host, path)
		}
	})
}
