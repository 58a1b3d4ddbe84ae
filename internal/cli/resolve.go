package cli

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/resolve/proof"
	"canton.dev/canton/internal/resource"
)

func resolveCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "resolve NAME",
		Short: "Resolve a mesh name (service.namespace) through the scope hierarchy, like DNS",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			creds, err := identity.LoadCredentials(e.credentials)
			if err != nil {
				return err
			}
			name := strings.TrimSuffix(strings.ToLower(args[0]), ".")
			if !strings.HasSuffix(name, "."+c.Mesh()) {
				name += "." + c.Mesh()
			}
			resp, err := c.Raw().Resolve(cmd.Context(), &apipb.ResolveRequest{Name: name})
			if err != nil {
				return fmt.Errorf("resolve: %w", api.Err(err))
			}
			roots := x509.NewCertPool()
			for _, r := range creds.Bundle {
				roots.AddCert(r)
			}
			res, err := proof.VerifyResponse(roots, name, resp, time.Now())
			if err != nil {
				return fmt.Errorf("%w (the answer failed verification against the mesh trust bundle of %s)", err, e.credentials)
			}
			return printResolve(e, resp, res)
		},
	}
}

func printResolve(e *env, r *apipb.ResolveResponse, res *proof.Result) error {
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	defer w.Flush()
	fmt.Fprintf(w, "name:\t%s\n", r.Name)
	for _, h := range res.Hops {
		fmt.Fprintf(w, "verified:\t%s: %s by CA %q (scope %s, anchor %s); chain %s\n", h.Name, h.Kind,
			h.Signers[len(h.Signers)-1], h.Scopes[len(h.Scopes)-1], h.Anchor, strings.Join(h.Scopes, " -> "))
	}
	fmt.Fprintf(w, "vouched by:\tscope CA %q of %s, valid until %s\n", res.Signer, res.Scope, res.Expires.UTC().Format(time.RFC3339))
	if len(r.Aliases) > 0 {
		fmt.Fprintf(w, "aliases:\t%s -> %s\n", strings.Join(r.Aliases, " -> "), r.Canonical)
	}
	if len(r.Referrals) > 0 {
		fmt.Fprintf(w, "referred to:\t%s (zone cuts followed)\n", strings.Join(r.Referrals, " -> "))
	}
	fmt.Fprintf(w, "answered by:\tscope %s\n", r.Scope)
	if !r.Found {
		why := "does not exist"
		if r.Reason != "" {
			why = r.Reason
		}
		fmt.Fprintf(w, "answer:\t%s (negative answer, ttl %ds)\n", why, r.TtlSeconds)
		return fmt.Errorf("resolve: %s does not exist", r.Name)
	}
	var svc resource.Object
	var wls []resource.Object
	if err := json.Unmarshal(r.Service, &svc); err != nil {
		return err
	}
	if err := json.Unmarshal(r.Workloads, &wls); err != nil {
		return err
	}
	fmt.Fprintf(w, "service:\t%s (uid %s)\n", r.Canonical, svc.UID)
	fmt.Fprintf(w, "identity:\t%s\n", r.Identity)
	if t, err := resource.Typed(svc); err == nil {
		for _, p := range t.(*resource.ServiceSpec).Ports {
			fmt.Fprintf(w, "port:\t%s %d/%s\n", p.Name, p.Port, p.Protocol)
		}
	}
	for _, o := range wls {
		if t, err := resource.Typed(o); err == nil {
			s := t.(*resource.WorkloadSpec)
			fmt.Fprintf(w, "endpoint:\t%s:%d %v (%s)\n", s.Address, s.Port, s.Labels, o.Name)
		}
	}
	if len(wls) == 0 {
		fmt.Fprintf(w, "endpoint:\tnone registered\n")
	}
	fmt.Fprintf(w, "ttl:\t%ds\n", r.TtlSeconds)
	return nil
}
