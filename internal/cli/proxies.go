package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
)

// isProxyKind reports whether a get names proxies, which are not resources
// of a scope but live xDS streams of the anchors.
func isProxyKind(k string) bool {
	switch strings.ToLower(k) {
	case "proxy", "proxies", "px":
		return true
	}
	return false
}

type connectedProxy struct {
	anchor string
	p      *apipb.ProxyStatus
}

// listProxies asks every anchor in the address book which proxies it serves.
func listProxies(ctx context.Context, c *api.Client, creds *identity.Credentials) ([]connectedProxy, []string, error) {
	first, err := c.Status(ctx)
	if err != nil {
		return nil, nil, err
	}
	var out []connectedProxy
	var unreachable []string
	for _, a := range first.Anchors {
		st := first
		if a.Id != first.AnchorId {
			if st, err = statusOf(ctx, a.Address, creds); err != nil {
				unreachable = append(unreachable, a.Id)
				continue
			}
		}
		for _, p := range st.Proxies {
			out = append(out, connectedProxy{anchor: st.AnchorId, p: p})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].p.Id < out[j].p.Id })
	return out, unreachable, nil
}

func printProxies(w io.Writer, list []connectedProxy, unreachable []string, name, ns, mesh string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	if name == "" {
		fmt.Fprintln(tw, "NAMESPACE\tNAME\tSERVICE\tVERSION\tANCHOR\tXDS\tCONNECTED\tSTATUS")
	}
	found := false
	for _, cp := range list {
		p := cp.p
		if (ns != "" && p.Namespace != ns) || (name != "" && p.Id != name) {
			continue
		}
		found = true
		state := "synced"
		if p.NackMessage != "" {
			state = "NACK " + short(p.NackVersion)
		}
		mode := "sotw"
		if p.Delta {
			mode = "delta"
		}
		age := time.Since(time.Unix(p.ConnectedUnix, 0)).Round(time.Second)
		if name == "" {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", relative(p.Namespace, mesh), p.Id, p.Service, dash(p.Labels["version"]), cp.anchor, mode, age, state)
			continue
		}
		fmt.Fprintf(tw, "proxy %s (service %s, namespace %s) on anchor %s, %s xDS, connected %s ago\n", p.Id, p.Service, relative(p.Namespace, mesh), cp.anchor, mode, age)
		types := make([]string, 0, len(p.Acked))
		for t := range p.Acked {
			types = append(types, t)
		}
		sort.Strings(types)
		for _, t := range types {
			fmt.Fprintf(tw, "  acked\t%s\t%s\n", t[strings.LastIndex(t, ".")+1:], short(p.Acked[t]))
		}
		if p.NackMessage != "" {
			fmt.Fprintf(tw, "  NACK\t%s\t%s: %s\n", p.NackType[strings.LastIndex(p.NackType, ".")+1:], short(p.NackVersion), p.NackMessage)
		}
		for _, s := range p.Skipped {
			fmt.Fprintf(tw, "  not sent\t%s\n", s)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(unreachable) > 0 {
		fmt.Fprintf(w, "(anchors not reachable: %s)\n", strings.Join(unreachable, ", "))
	}
	if name != "" && !found {
		return fmt.Errorf("get: proxy %q is not connected to any reachable anchor", name)
	}
	return nil
}
