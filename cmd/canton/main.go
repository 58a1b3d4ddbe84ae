// Command canton is the one Canton binary: anchor, proxy, CLI and demo.
package main

import (
	"os"

	"canton.dev/canton/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
