package workload_test

import (
	"reflect"
	"strings"
	"testing"

	"canton.dev/canton/internal/workload"
)

func TestParseTLSCredentials(t *testing.T) {
	got, err := workload.ParseTLSCredentials("web=/c/tls.crt,/c/tls.key; partner=/p/tls.crt,/p/tls.key,/p/ca.crt")
	want := []workload.TLSCredential{{Name: "web", Cert: "/c/tls.crt", Key: "/c/tls.key"},
		{Name: "partner", Cert: "/p/tls.crt", Key: "/p/tls.key", CA: "/p/ca.crt"}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, %v; want %+v", got, err, want)
	}
	for _, bad := range []string{"web", "web=/c/tls.crt", "=/a,/b", "web=/a,/b,/c,/d", "web=,/b", "w=/a,/b;w=/c,/d"} {
		if _, err := workload.ParseTLSCredentials(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	opts := workload.Options{TLSCredentials: want}
	if err := opts.CheckGateway(); err == nil || !strings.Contains(err.Error(), "--tls-credential needs --gateway") {
		t.Errorf("a sidecar with TLS credentials: %v", err)
	}
}
