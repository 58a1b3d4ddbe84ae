package httpsafe

import (
	"strings"
	"testing"
)

func TestNormalizePath(t *testing.T) {
	norm := PathOptions{Normalize: true, MergeSlashes: true}
	tests := []struct {
		in      string
		o       PathOptions
		want    string
		unesc   bool
		wantErr error
	}{
		{"/a/b", norm, "/a/b", false, nil},
		{"/", norm, "/", false, nil},
		{"/a/./b/../c", norm, "/a/c", false, nil},
		{"/../../etc/passwd", norm, "/etc/passwd", false, nil},
		{"/a/..", norm, "/", false, nil},
		{"/a/b/.", norm, "/a/b/", false, nil},
		{"/a/b/..", norm, "/a/", false, nil},
		{"/a//b///c", norm, "/a/b/c", false, nil},
		{"/a//b", PathOptions{Normalize: true}, "/a//b", false, nil},
		// Dot segments first, then merging (Envoy's order).
		{"/a//../b", norm, "/a/b", false, nil},
		{"/a//../b", PathOptions{MergeSlashes: true}, "/a/../b", false, nil},
		// Istio's DECODE_AND_MERGE_SLASHES: unescape, normalize, merge.
		{"/x/..%2F..%5Cadmin", PathOptions{Normalize: true, MergeSlashes: true, EscapedSlashes: UnescapeSlashesAndForward}, "/admin", true, nil},
		{"/a%2F%2Fb", PathOptions{Normalize: true, MergeSlashes: true, EscapedSlashes: UnescapeSlashesAndForward}, "/a/b", true, nil},
		{"/a%00", norm, "", false, ErrPathEscapedNUL},
		{"/a%00", PathOptions{}, "", false, ErrPathEscapedNUL},
		{"/%2e%2E/x", norm, "/x", false, nil},
		{"/%61%62c", norm, "/abc", false, nil},
		{"/a%3fb", norm, "/a%3Fb", false, nil},
		{"/a\\..\\b", norm, "/b", false, nil},
		{"/a..b/.c", norm, "/a..b/.c", false, nil},
		{"/a%2Fb", norm, "/a%2Fb", false, nil},
		{"/a%2fb", PathOptions{EscapedSlashes: RejectEscapedSlashes}, "", false, ErrPathEscapedSlash},
		{"/a%2Fb%5c..", PathOptions{Normalize: true, EscapedSlashes: UnescapeSlashesAndForward}, "/a/", true, nil},
		{"/a%2Fb", PathOptions{EscapedSlashes: UnescapeSlashesAndRedirect}, "/a/b", true, nil},
		{"/a/../b", PathOptions{}, "/a/../b", false, nil},
		{"a/b", norm, "", false, ErrPathNotOrigin},
		{"", norm, "", false, ErrPathNotOrigin},
		{"/a%zz", norm, "", false, ErrPathBadEscape},
		{"/a%2", norm, "", false, ErrPathBadEscape},
		{"/a b", norm, "", false, ErrPathBadChar},
		{"/a\x00b", norm, "", false, ErrPathBadChar},
		{"/a#b", norm, "", false, ErrPathBadChar},
		{"/caf\xc3\xa9", norm, "", false, ErrPathBadChar},
	}
	for _, tt := range tests {
		got, unesc, err := NormalizePath(tt.in, tt.o)
		if err != tt.wantErr || got != tt.want || unesc != tt.unesc {
			t.Errorf("NormalizePath(%q, %+v) = %q, %v, %v; want %q, %v, %v", tt.in, tt.o, got, unesc, err, tt.want, tt.unesc, tt.wantErr)
		}
	}
}

func TestNormalizePathCanonicalDoesNotAllocate(t *testing.T) {
	o := PathOptions{Normalize: true, MergeSlashes: true}
	if n := testing.AllocsPerRun(100, func() { NormalizePath("/api/v1/users/%2Fx?", o) }); n != 0 {
		t.Errorf("allocations = %v, want 0", n)
	}
}

// FuzzNormalizePath checks that a normalized path is valid, idempotent and free of dot segments and
// double slashes.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "/%2e%2e/%2F", "//a//b/./c/..", "/a\\b", "/%zz", "/..", "/a/b/%2E"} {
		f.Add(s, true, true, uint8(0))
	}
	f.Fuzz(func(t *testing.T, p string, normalize, merge bool, slash uint8) {
		o := PathOptions{Normalize: normalize, MergeSlashes: merge, EscapedSlashes: SlashAction(slash % 4)}
		got, _, err := NormalizePath(p, o)
		if err != nil {
			return
		}
		again, _, err := NormalizePath(got, o)
		if err != nil {
			t.Fatalf("NormalizePath(%q) = %q, which fails again: %v", p, got, err)
		}
		if again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q", p, got, again)
		}
		if normalize {
			for _, seg := range strings.Split(got, "/") {
				if seg == "." || seg == ".." {
					t.Fatalf("%q -> %q keeps a dot segment", p, got)
				}
			}
		}
		if merge && strings.Contains(got, "//") {
			t.Fatalf("%q -> %q keeps a double slash", p, got)
		}
	})
}
