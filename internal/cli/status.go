package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
)

func statusCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show anchors, the scopes they host, leaders and replication progress",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			first, err := c.Status(cmd.Context())
			if err != nil {
				return fmt.Errorf("status: %w", err)
			}
			creds, err := identity.LoadCredentials(e.credentials)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintf(tw, "mesh %s\n\n", first.Mesh)
			fmt.Fprintln(tw, "ANCHOR\tADDRESS\tSCOPE\tROLE\tLEADER\tTERM\tAPPLIED\tREVISION\tLINEAGE HEAD")
			var reached []*apipb.StatusResponse
			for _, a := range first.Anchors {
				st := first
				if a.Id != first.AnchorId {
					st, err = statusOf(cmd.Context(), a.Address, creds)
				}
				if err != nil {
					fmt.Fprintf(tw, "%s\t%s\t-\tunreachable\t-\t-\t-\t-\t%s\n", a.Id, a.Address, oneLine(err.Error()))
					continue
				}
				reached = append(reached, st)
				if len(st.Scopes) == 0 {
					fmt.Fprintf(tw, "%s\t%s\t-\t(no scopes)\t-\t-\t-\t-\t-\n", a.Id, a.Address)
				}
				for _, s := range st.Scopes {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", a.Id, a.Address, s.Domain, role(st.AnchorId, s), dash(s.Leader), s.Term, s.Applied, s.Revision, short(s.LineageHead))
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			return printStaleImports(e.stdout, reached, time.Now())
		},
	}
}

// printStaleImports lists, per anchor, the imports whose owning scope it
// cannot reach: since when, the last answer it still serves (or that it
// dropped it, past --max-stale) and why. Nothing when there is none.
func printStaleImports(w io.Writer, anchors []*apipb.StatusResponse, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	header := false
	for _, st := range anchors {
		for _, im := range st.Imports {
			if !im.Stale {
				continue
			}
			if !header {
				fmt.Fprintln(tw, "\nSTALE IMPORTS")
				fmt.Fprintln(tw, "ANCHOR\tSCOPE\tNAME\tOWNER\tSTALE SINCE\tSERVING\tERROR")
				header = true
			}
			serving := "last answer of " + ago(im.AnsweredUnix, now)
			switch {
			case im.AnsweredUnix == 0:
				serving = "nothing (never answered)"
			case im.Dropped:
				serving = "nothing (dropped: older than --max-stale)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", st.AnchorId, im.Scope, im.Name, dash(im.Owner), ago(im.StaleSinceUnix, now), serving, dash(oneLine(im.Error)))
		}
	}
	return tw.Flush()
}

// ago renders a Unix time as RFC 3339 (UTC) and how long before now it was.
func ago(unix int64, now time.Time) string {
	if unix == 0 {
		return "-"
	}
	t := time.Unix(unix, 0).UTC()
	return fmt.Sprintf("%s (%s ago)", t.Format(time.RFC3339), now.Sub(t).Round(time.Second))
}

func role(self string, s *apipb.ScopeStatus) string {
	switch {
	case s.Leader == self:
		return "leader"
	case contains(s.Learners, self):
		return "learner"
	case contains(s.Voters, self):
		return "follower"
	}
	return "removed"
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func statusOf(ctx context.Context, addr string, creds *identity.Credentials) (*apipb.StatusResponse, error) {
	c, err := api.Dial(addr, creds)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return c.Status(ctx)
}
