package xds

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
)

func TestMergeMatch(t *testing.T) {
	prefix := func(p string) *networking.StringMatch {
		return &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: p}}
	}
	exact := func(e string) *networking.StringMatch {
		return &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: e}}
	}
	hdr := func(k string, v *networking.StringMatch) map[string]*networking.StringMatch {
		return map[string]*networking.StringMatch{k: v}
	}
	for _, tc := range []struct {
		name       string
		root, dele *networking.HTTPMatchRequest
		want       *networking.HTTPMatchRequest
		why        string // substring of the refusal; "" = merged
	}{
		{"no root match", nil, &networking.HTTPMatchRequest{Uri: prefix("/a")}, &networking.HTTPMatchRequest{Uri: prefix("/a")}, ""},
		{"no delegate match", &networking.HTTPMatchRequest{Uri: prefix("/a")}, nil, &networking.HTTPMatchRequest{Uri: prefix("/a")}, ""},
		{"longer prefix", &networking.HTTPMatchRequest{Uri: prefix("/a")}, &networking.HTTPMatchRequest{Uri: prefix("/a/b")},
			&networking.HTTPMatchRequest{Uri: prefix("/a/b")}, ""},
		{"exact under prefix", &networking.HTTPMatchRequest{Uri: prefix("/a")}, &networking.HTTPMatchRequest{Uri: exact("/a/x")},
			&networking.HTTPMatchRequest{Uri: exact("/a/x")}, ""},
		{"other prefix", &networking.HTTPMatchRequest{Uri: prefix("/a")}, &networking.HTTPMatchRequest{Uri: prefix("/b")}, nil, "uri prefix /b is not within prefix /a"},
		{"prefix under exact", &networking.HTTPMatchRequest{Uri: exact("/a")}, &networking.HTTPMatchRequest{Uri: prefix("/a")}, nil, "is not within exact /a"},
		{"root conditions kept", &networking.HTTPMatchRequest{Uri: prefix("/a"), Method: exact("GET"), Port: 9080, Headers: hdr("x", exact("1"))},
			&networking.HTTPMatchRequest{Name: "d", Headers: hdr("y", exact("2")), SourceLabels: map[string]string{"app": "p"}},
			&networking.HTTPMatchRequest{Name: "d", Uri: prefix("/a"), Method: exact("GET"), Port: 9080,
				Headers: map[string]*networking.StringMatch{"x": exact("1"), "y": exact("2")}, SourceLabels: map[string]string{"app": "p"}}, ""},
		{"header contradicts", &networking.HTTPMatchRequest{Headers: hdr("x", exact("1"))}, &networking.HTTPMatchRequest{Headers: hdr("x", exact("2"))}, nil, "headers x"},
		{"port contradicts", &networking.HTTPMatchRequest{Port: 80}, &networking.HTTPMatchRequest{Port: 81}, nil, "port 81 is not 80"},
		{"labels contradict", &networking.HTTPMatchRequest{SourceLabels: map[string]string{"app": "a"}},
			&networking.HTTPMatchRequest{SourceLabels: map[string]string{"app": "b"}}, nil, "sourceLabels app=b"},
	} {
		got, why := mergeMatch(tc.root, tc.dele)
		switch {
		case tc.why != "" && !strings.Contains(why, tc.why):
			t.Errorf("%s: refusal %q, want it to say %q", tc.name, why, tc.why)
		case tc.why == "" && why != "":
			t.Errorf("%s: refused: %s", tc.name, why)
		case tc.why == "" && !proto.Equal(got, tc.want):
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}
