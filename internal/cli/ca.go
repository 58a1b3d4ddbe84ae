package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

// rotateCACmd is `canton scope rotate-ca DOMAIN`: the scope's CA is replaced
// by a new intermediate under the same root. Certificates the old CA issued
// stay valid until they expire; workloads move to the new CA at their next
// rotation (half their lifetime).
func rotateCACmd(e *env) *cobra.Command {
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "rotate-ca DOMAIN [--ttl DURATION]",
		Short: "Replace a scope's CA with a new intermediate under the same root (no downtime)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			domain := namespace(args[0], c.Mesh())
			resp, err := c.RotateCA(cmd.Context(), domain, ttl)
			if err != nil {
				return fmt.Errorf("scope rotate-ca: %w", err)
			}
			fmt.Fprintf(e.stdout, "scope %s: CA %s replaced by %s (signed by %q, valid until %s) at revision %d\n",
				resp.Scope, resp.PreviousSerial, resp.Serial, resp.Issuer,
				time.Unix(resp.NotAfterUnix, 0).UTC().Format(time.RFC3339), resp.Revision)
			return nil
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "validity of the new CA (default 8760h; cut at the signing CA's expiry)")
	return cmd
}
