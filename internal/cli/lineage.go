package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/scope"
)

func lineageCmd(e *env) *cobra.Command {
	var (
		sc     string
		verify bool
	)
	cmd := &cobra.Command{
		Use:   "lineage [--scope DOMAIN] [--verify]",
		Short: "Show a scope's hash-chained history of committed mutations; --verify recomputes it on every anchor",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			if sc == "" {
				sc = c.Mesh()
			} else {
				sc = namespace(sc, c.Mesh())
			}
			resp, recs, err := fetchLineage(cmd.Context(), c, sc)
			if err != nil {
				return err
			}
			if !verify {
				return printLineage(e.stdout, recs)
			}
			creds, err := identity.LoadCredentials(e.credentials)
			if err != nil {
				return err
			}
			return verifyLineage(cmd.Context(), e.stdout, c, creds, sc, resp, recs)
		},
	}
	cmd.Flags().StringVar(&sc, "scope", "", "scope domain (default: the mesh root)")
	cmd.Flags().BoolVar(&verify, "verify", false, "recompute every hash and link on every anchor of the scope, compare them; exit non-zero on any mismatch")
	return cmd
}

func fetchLineage(ctx context.Context, c *api.Client, sc string) (*apipb.LineageResponse, []scope.Record, error) {
	resp, err := c.Lineage(ctx, sc, 0, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("lineage: %w", err)
	}
	var recs []scope.Record
	if err := json.Unmarshal(resp.Records, &recs); err != nil {
		return nil, nil, fmt.Errorf("lineage: anchor %s sent malformed records: %w", resp.Anchor, err)
	}
	return resp, recs, nil
}

// checkChain recomputes one anchor's chain and checks its reported head.
func checkChain(sc string, resp *apipb.LineageResponse, recs []scope.Record) error {
	if err := scope.VerifyLineage(recs); err != nil {
		return fmt.Errorf("lineage of scope %s on anchor %s FAILED verification: %w", sc, resp.Anchor, err)
	}
	if n := len(recs); n > 0 && (recs[n-1].Index != resp.HeadIndex || recs[n-1].Hash != resp.HeadHash) {
		return fmt.Errorf("lineage of scope %s on anchor %s FAILED verification: head %d %s does not match its last record %d %s", sc, resp.Anchor, resp.HeadIndex, resp.HeadHash, recs[n-1].Index, recs[n-1].Hash)
	}
	return nil
}

// verifyLineage checks the chain of every anchor hosting the scope and that
// they agree record by record (one may be behind, never different).
func verifyLineage(ctx context.Context, w io.Writer, c *api.Client, creds *identity.Credentials, sc string, first *apipb.LineageResponse, ref []scope.Record) error {
	if err := checkChain(sc, first, ref); err != nil {
		return err
	}
	st, err := c.Status(ctx)
	if err != nil {
		return fmt.Errorf("lineage: %w", err)
	}
	agreed := []string{first.Anchor}
	var unchecked []string
	for _, a := range st.Anchors {
		if a.Id == first.Anchor {
			continue
		}
		resp, recs, err := fetchLineageFrom(ctx, a.Address, creds, sc)
		if err != nil {
			fmt.Fprintf(w, "anchor %s not checked: %v\n", a.Id, err)
			unchecked = append(unchecked, a.Id)
			continue
		}
		if resp.Anchor != a.Id {
			continue // it hosts no replica of the scope and forwarded the request
		}
		if err := checkChain(sc, resp, recs); err != nil {
			return err
		}
		for i := 0; i < len(recs) && i < len(ref); i++ {
			if recs[i].Index != ref[i].Index || recs[i].Hash != ref[i].Hash {
				return fmt.Errorf("lineage of scope %s FAILED verification: anchors %s and %s disagree at record %d: index %d hash %s vs index %d hash %s", sc, first.Anchor, a.Id, i, ref[i].Index, short(ref[i].Hash), recs[i].Index, short(recs[i].Hash))
			}
		}
		agreed = append(agreed, a.Id)
	}
	if len(unchecked) > 0 {
		// What could not be read was not verified: say so with a failing exit.
		return fmt.Errorf("lineage of scope %s verification INCOMPLETE: %d records, head %d %s, agree on anchors %v, but anchors %v could not be checked", sc, len(ref), first.HeadIndex, first.HeadHash, agreed, unchecked)
	}
	fmt.Fprintf(w, "lineage of scope %s verified: %d records, head %d %s; anchors %v agree\n", sc, len(ref), first.HeadIndex, first.HeadHash, agreed)
	return nil
}

// fetchLineageFrom reads scope sc's lineage from the anchor at addr.
func fetchLineageFrom(ctx context.Context, addr string, creds *identity.Credentials, sc string) (*apipb.LineageResponse, []scope.Record, error) {
	c, err := api.Dial(addr, creds)
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	return fetchLineage(ctx, c, sc)
}

// printLineage prints one line per record. TIME comes before CHANGE so that the
// earlier columns keep their positions for scripts.
func printLineage(w io.Writer, recs []scope.Record) error {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "INDEX\tHASH\tPROPOSER\tTIME\tCHANGE")
	for _, r := range recs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", r.Index, short(r.Hash), r.Proposer, recordTime(r), describe(r.Mutation))
	}
	return tw.Flush()
}

// recordTime is the time the proposing anchor claims, RFC 3339 in UTC with
// milliseconds; "-" for a record committed before mutations carried a time.
func recordTime(r scope.Record) string {
	if r.Time == "" {
		return "-"
	}
	if t, ok := r.At(); ok {
		return scope.FormatTime(t)
	}
	return "(invalid)" // only a record that fails --verify has one
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// describe renders a mutation in a few words: "put VirtualService bookinfo/reviews".
func describe(canonical []byte) string {
	m, err := scope.Decode(canonical)
	if err != nil {
		return "(undecodable: " + err.Error() + ")"
	}
	switch m.Op {
	case scope.OpPut:
		s := "put"
		for _, o := range m.Objects {
			s += fmt.Sprintf(" %s %s/%s", o.Kind, o.Namespace, o.Name)
		}
		return s
	case scope.OpDelete:
		return fmt.Sprintf("delete %s %s/%s", m.Kind, m.Namespace, m.Name)
	case scope.OpGenesis:
		return fmt.Sprintf("genesis %s (parent %q, anchors %v)", m.Genesis.Domain, m.Genesis.Parent, m.Genesis.Anchors)
	case scope.OpExpireLeases, scope.OpRevokeLease:
		return fmt.Sprintf("%s %v", m.Op, m.LeaseIDs)
	}
	return string(m.Op)
}
