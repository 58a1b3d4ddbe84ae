package identity

import (
	"strings"
	"testing"
)

func TestParseID(t *testing.T) {
	longTD := strings.Repeat("a", 255)
	tests := []struct {
		name    string
		in      string
		want    ID
		wantErr string // substring; empty means success
	}{
		{name: "anchor", in: "spiffe://demo.mesh/anchor/a1", want: ID{"demo.mesh", "/anchor/a1"}},
		{name: "workload", in: "spiffe://bookinfo.demo.mesh/sa/reviews", want: ID{"bookinfo.demo.mesh", "/sa/reviews"}},
		{name: "trust domain only", in: "spiffe://demo.mesh", want: ID{"demo.mesh", ""}},
		{name: "all allowed characters", in: "spiffe://a-b_c.0-9/A-Z_a.z-0/x", want: ID{"a-b_c.0-9", "/A-Z_a.z-0/x"}},
		{name: "dots inside a segment", in: "spiffe://m/a.b/...x/..y", want: ID{"m", "/a.b/...x/..y"}},
		{name: "trust domain of 255 bytes", in: "spiffe://" + longTD + "/x", want: ID{longTD, "/x"}},
		{name: "whole ID of 2048 bytes", in: "spiffe://m/" + strings.Repeat("p", 2048-len("spiffe://m/")), want: ID{"m", "/" + strings.Repeat("p", 2048-len("spiffe://m/"))}},

		{name: "empty", in: "", wantErr: "empty"},
		{name: "no scheme", in: "demo.mesh/anchor/a1", wantErr: "must start with"},
		{name: "other scheme", in: "https://demo.mesh/anchor/a1", wantErr: "must start with"},
		{name: "uppercase scheme", in: "SPIFFE://demo.mesh/a", wantErr: "must start with"},
		{name: "single slash", in: "spiffe:/demo.mesh/a", wantErr: "must start with"},
		{name: "empty trust domain", in: "spiffe:///a", wantErr: "trust domain is empty"},
		{name: "scheme only", in: "spiffe://", wantErr: "trust domain is empty"},
		{name: "trust domain over 255 bytes", in: "spiffe://" + longTD + "a/x", wantErr: "longer than 255"},
		{name: "whole ID over 2048 bytes", in: "spiffe://m/" + strings.Repeat("p", 2048), wantErr: "longer than 2048"},
		{name: "uppercase trust domain", in: "spiffe://Demo.mesh/a", wantErr: "invalid character 'D'"},
		{name: "port", in: "spiffe://demo.mesh:443/a", wantErr: "invalid character ':'"},
		{name: "user info", in: "spiffe://u@demo.mesh/a", wantErr: "invalid character '@'"},
		{name: "percent in trust domain", in: "spiffe://demo%2Emesh/a", wantErr: "invalid character '%'"},
		{name: "percent-encoding in path", in: "spiffe://demo.mesh/a%20b", wantErr: "invalid character '%'"},
		{name: "query", in: "spiffe://demo.mesh/a?x=1", wantErr: "invalid character '?'"},
		{name: "query on trust domain", in: "spiffe://demo.mesh?x=1", wantErr: "invalid character '?'"},
		{name: "fragment", in: "spiffe://demo.mesh/a#f", wantErr: "invalid character '#'"},
		{name: "space", in: "spiffe://demo.mesh/a b", wantErr: "invalid character ' '"},
		{name: "non-ASCII", in: "spiffe://demo.mesh/ä", wantErr: "invalid character"},
		{name: "trailing slash", in: "spiffe://demo.mesh/a/", wantErr: "empty segment"},
		{name: "root path", in: "spiffe://demo.mesh/", wantErr: "empty segment"},
		{name: "double slash", in: "spiffe://demo.mesh/a//b", wantErr: "empty segment"},
		{name: "dot segment", in: "spiffe://demo.mesh/a/./b", wantErr: `relative segment "."`},
		{name: "dot-dot segment", in: "spiffe://demo.mesh/a/../b", wantErr: `relative segment ".."`},
		{name: "final dot-dot", in: "spiffe://demo.mesh/..", wantErr: `relative segment ".."`},
		{name: "backslash", in: `spiffe://demo.mesh/a\b`, wantErr: "invalid character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseID(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseID(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseID(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseID(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
			if got.String() != tt.in {
				t.Fatalf("String() = %q, want %q", got.String(), tt.in)
			}
			if got.URL().String() != tt.in {
				t.Fatalf("URL().String() = %q, want %q", got.URL().String(), tt.in)
			}
		})
	}
}

func TestIDConstructorsAndValidate(t *testing.T) {
	tests := []struct {
		id      ID
		want    string
		wantErr bool
	}{
		{AnchorID("demo.mesh", "a1"), "spiffe://demo.mesh/anchor/a1", false},
		{AdminID("demo.mesh", "admin"), "spiffe://demo.mesh/admin/admin", false},
		{WorkloadID("bookinfo.demo.mesh", "reviews"), "spiffe://bookinfo.demo.mesh/sa/reviews", false},
		{AnchorID("demo.mesh", ""), "spiffe://demo.mesh/anchor/", true},
		{AnchorID("demo.mesh", "a/b"), "spiffe://demo.mesh/anchor/a/b", false}, // valid SPIFFE ID, though not an anchor (see AcceptAnchors)
		{AdminID("Demo.mesh", "x"), "spiffe://Demo.mesh/admin/x", true},
		{ID{TrustDomain: "demo", Path: "mesh/x"}, "spiffe://demomesh/x", true}, // fields do not split as given
		{ID{}, "", true},
	}
	for _, tt := range tests {
		if got := tt.id.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.id, got, tt.want)
		}
		if err := tt.id.Validate(); (err != nil) != tt.wantErr {
			t.Errorf("%#v.Validate() = %v, wantErr %v", tt.id, err, tt.wantErr)
		}
	}
}

func TestMemberOf(t *testing.T) {
	tests := []struct {
		td, domain string
		want       bool
	}{
		{"demo.mesh", "demo.mesh", true},
		{"bookinfo.demo.mesh", "demo.mesh", true},
		{"a.b.demo.mesh", "demo.mesh", true},
		{"xdemo.mesh", "demo.mesh", false},
		{"demo.mesh", "bookinfo.demo.mesh", false},
		{"demo.mesh.evil", "demo.mesh", false},
		{"demo.mesh", "", false},
	}
	for _, tt := range tests {
		if got := (ID{TrustDomain: tt.td, Path: "/x"}).MemberOf(tt.domain); got != tt.want {
			t.Errorf("ID in %q MemberOf(%q) = %v, want %v", tt.td, tt.domain, got, tt.want)
		}
	}
}

func TestAcceptAnchors(t *testing.T) {
	accept := AcceptAnchors("demo.mesh")
	tests := []struct {
		id   ID
		want bool
	}{
		{AnchorID("demo.mesh", "a1"), true},
		{AnchorID("other.mesh", "a1"), false},
		{AnchorID("sub.demo.mesh", "a1"), false},
		{AdminID("demo.mesh", "a1"), false},
		{ID{"demo.mesh", "/anchor/a1/extra"}, false},
		{ID{"demo.mesh", "/anchor"}, false},
		{ID{"demo.mesh", "/anchors/a1"}, false},
	}
	for _, tt := range tests {
		if err := accept(tt.id); (err == nil) != tt.want {
			t.Errorf("AcceptAnchors(demo.mesh)(%s) = %v, want accepted=%v", tt.id, err, tt.want)
		}
	}
}

func TestCheckDNSName(t *testing.T) {
	valid := []string{"demo.mesh", "a", "a-b.c0", strings.Repeat("a", 63) + ".x"}
	invalid := []string{"", "Demo.mesh", "a..b", ".a", "a.", "-a.b", "a-.b", "a_b.c", "*.demo.mesh", strings.Repeat("a", 64) + ".x", strings.Repeat("a.", 127) + "ab"}
	for _, s := range valid {
		if err := checkDNSName(s); err != nil {
			t.Errorf("checkDNSName(%q) = %v, want nil", s, err)
		}
	}
	for _, s := range invalid {
		if err := checkDNSName(s); err == nil {
			t.Errorf("checkDNSName(%q) = nil, want error", s)
		}
	}
}
