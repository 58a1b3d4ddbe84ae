package workload_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"canton.dev/canton/internal/workload"
)

// TestSidecarDNS: a sidecar started with Options.DNS answers another service's short name
// (expanded in its namespace) with that service's workload address, over UDP, and stops
// serving with the sidecar.
func TestSidecarDNS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, _ := startBookinfo(ctx, t)

	rv := startSidecar(t, c, "reviews", "v1", app(t, "reviews-v1"))
	pp := startSidecarWith(t, c, ns, allAnchors(c), "productpage", "v1", app(t, "productpage"), func(o *workload.Options) {
		o.DNS = "127.0.0.1:0"
	})
	addr := pp.w.DNS()
	if addr == "" {
		t.Fatal("no DNS address with Options.DNS set")
	}
	if rv.w.DNS() != "" {
		t.Errorf("a sidecar without Options.DNS serves DNS on %s", rv.w.DNS())
	}
	reviewsHost, _, err := net.SplitHostPort(rv.w.Inbound())
	if err != nil {
		t.Fatal(err)
	}
	ask := func(name string, qtype uint16) (*mdns.Msg, error) {
		m := new(mdns.Msg)
		m.SetQuestion(mdns.Fqdn(name), qtype)
		r, _, err := (&mdns.Client{Net: "udp", Timeout: 3 * time.Second}).Exchange(m, addr)
		return r, err
	}
	// The registration of reviews is committed before its sidecar is ready, but the answer
	// may still come from a replica that lags: poll with a deadline, not a sleep.
	eventually(t, 10*time.Second, func() error {
		r, err := ask("reviews", mdns.TypeA)
		if err != nil {
			return err
		}
		if r.Rcode != mdns.RcodeSuccess {
			return fmt.Errorf("reviews A: rcode %s", mdns.RcodeToString[r.Rcode])
		}
		var cname string
		var addrs []string
		for _, rr := range r.Answer {
			switch rr := rr.(type) {
			case *mdns.CNAME:
				cname = rr.Target
			case *mdns.A:
				addrs = append(addrs, rr.A.String())
			}
		}
		if len(addrs) != 1 || addrs[0] != reviewsHost {
			return fmt.Errorf("reviews A: %v, want [%s] (answer %v)", addrs, reviewsHost, r.Answer)
		}
		if cname != "reviews."+ns+"." {
			return fmt.Errorf("reviews: expanded to %q, want reviews.%s. (answer %v)", cname, ns, r.Answer)
		}
		return nil
	})
	r, err := ask("_http._tcp.reviews."+ns, mdns.TypeSRV)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Answer) != 1 || r.Answer[0].(*mdns.SRV).Port != 9080 {
		t.Errorf("reviews SRV: %v", r.Answer)
	}
	if r, err := ask("ratings", mdns.TypeA); err != nil || r.Rcode != mdns.RcodeNameError {
		t.Errorf("ratings (no such service): %v %v, want NXDOMAIN", r, err)
	}

	// The DNS server stops with the sidecar: its port is free again.
	pp.stop()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("DNS port %s still bound after the sidecar stopped: %v", addr, err)
	}
	pc.Close()
}
